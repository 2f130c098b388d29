//! Hostile input for the uploads' tests and load runs.

/// A GIF whose screen is `width` × `height` with one 1 × 1 frame: 35 bytes that a decoder
/// without limits expands to `width` × `height` × 4 bytes (a decompression bomb).
pub fn gif_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0]); // a global table of two colours
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out.extend_from_slice(&[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // a 1 × 1 frame at 0, 0
    out.extend_from_slice(&[2, 2, 0x44, 1, 0]); // its one pixel, LZW
    out.push(0x3b);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bomb_is_35_bytes_and_declares_its_screen() {
        let bomb = super::gif_bomb(6_000, 7_000);
        assert_eq!(bomb.len(), 35);
        assert_eq!(&bomb[..6], b"GIF89a");
        assert_eq!(u16::from_le_bytes([bomb[6], bomb[7]]), 6_000);
        assert_eq!(u16::from_le_bytes([bomb[8], bomb[9]]), 7_000);
    }
}
