//! Rows for PostgreSQL's `COPY ... FROM STDIN (FORMAT binary)`.
//!
//! The writer stores each batch's entries, postings and journal links with `COPY` rather than
//! `INSERT ... SELECT FROM unnest(...)`: the server then inserts them with its bulk path (a
//! WAL record per page of rows, not per row, and no executor per row). The binary format is
//! small and fixed (PostgreSQL docs, "COPY", "Binary Format"): a signature, a header, then per
//! row its field count and each field as a big-endian length (−1 for NULL) and its bytes in
//! the type's binary form, then a trailer. Only the types the ledger's rows use are here.

use uuid::Uuid;

use super::DbError;

/// The 11-byte signature, then the flags field and the header extension length, both zero.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A `COPY` binary stream being written, row by row.
pub(super) struct BinaryRows {
    bytes: Vec<u8>,
    columns: i16,
}

impl BinaryRows {
    /// A stream of rows of `columns` fields, with room for `rows` of about `row_bytes` each.
    pub(super) fn new(columns: i16, rows: usize, row_bytes: usize) -> Self {
        let mut bytes = Vec::with_capacity(rows.saturating_mul(row_bytes).saturating_add(32));
        bytes.extend_from_slice(HEADER);
        Self { bytes, columns }
    }

    /// Starts a row; the caller then writes exactly `columns` fields.
    pub(super) fn row(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&self.columns.to_be_bytes());
        self
    }

    fn field(&mut self, data: &[u8]) -> Result<&mut Self, DbError> {
        let len = i32::try_from(data.len()).map_err(|_| {
            DbError::Sql(sqlx::Error::Encode(
                format!("a COPY field of {} bytes is too large", data.len()).into(),
            ))
        })?;
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(data);
        Ok(self)
    }

    fn null(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// `bigint`.
    pub(super) fn int8(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&8i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// `bigint`, or NULL.
    pub(super) fn int8_or_null(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    /// `smallint`.
    pub(super) fn int2(&mut self, value: i16) -> &mut Self {
        self.bytes.extend_from_slice(&2i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// `uuid`: its 16 bytes.
    pub(super) fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.bytes.extend_from_slice(&16i32.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self
    }

    /// `uuid`, or NULL.
    pub(super) fn uuid_or_null(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(value) => self.uuid(value),
            None => self.null(),
        }
    }

    /// `text` (the server checks it against the database encoding, UTF-8).
    pub(super) fn text(&mut self, value: &str) -> Result<&mut Self, DbError> {
        self.field(value.as_bytes())
    }

    /// `bytea`: the bytes as they are.
    pub(super) fn bytea(&mut self, value: &[u8]) -> Result<&mut Self, DbError> {
        self.field(value)
    }

    /// The stream, with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_each_length_and_big_endian_bytes() {
        let mut rows = BinaryRows::new(6, 1, 64);
        rows.row()
            .int8(258)
            .int2(-2)
            .int8_or_null(None)
            .text("é")
            .unwrap()
            .bytea(&[0, 255])
            .unwrap()
            .uuid_or_null(Some(Uuid::from_bytes([7; 16])));
        let bytes = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 6]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 255]);
        expected.extend_from_slice(&[0, 0, 0, 16]);
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, expected);
    }
}
