//! CRC-16/CCITT-FALSE, the checksum EMV puts in data object `63`.

/// The generator polynomial x^16 + x^12 + x^5 + 1, most significant bit first.
const POLYNOMIAL: u16 = 0x1021;
/// The register's starting value.
const INITIAL: u16 = 0xFFFF;

/// CRC-16/CCITT-FALSE of `bytes`: polynomial 0x1021, initial value 0xFFFF, bits not
/// reflected, no final xor. Of ASCII `123456789` it is 0x29B1.
pub fn crc16_ccitt_false(bytes: &[u8]) -> u16 {
    let mut crc = INITIAL;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ POLYNOMIAL
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_matches_the_catalogue() {
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
    }

    #[test]
    fn empty_input_leaves_the_initial_value() {
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
    }
}
