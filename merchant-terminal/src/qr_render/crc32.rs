//! CRC-32 as PNG chunks need it (ISO 3309 / ITU-T V.42: reflected polynomial 0xEDB88320,
//! initial value and final xor 0xFFFFFFFF). A table of 256 entries built at compile time.

/// The reflected generator polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// The CRC of every byte value, one table lookup per input byte.
const TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 0 {
                crc >> 1
            } else {
                (crc >> 1) ^ POLYNOMIAL
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
}

/// The CRC-32 of the concatenation of `parts` (a PNG chunk's type, then its data).
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = u32::MAX;
    for part in parts {
        for &byte in *part {
            crc = TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_matches_the_catalogue() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn empty_iend_chunk_has_the_well_known_crc() {
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
    }
}
