//! Sample uploads, and probes for the metadata they carry, for tests.
//!
//! Every image here is a real encoding (made with the `image` crate) of a
//! gradient: red grows left to right, green top to bottom, so a test can
//! tell which way up an image is. The metadata is written byte by byte here:
//! an EXIF block whose GPS IFD says 52°22'12.34" N, 4°53'42.6" E, an XMP
//! packet naming the same place, and a (dummy) ICC profile.
//!
//! The probes ([`has_exif`], [`has_gps`], [`has_xmp`], [`has_icc`]) walk
//! JPEG segments, PNG chunks and WebP chunks, and also search the raw bytes
//! for the markers, so metadata in an unexpected place is still found.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageResult};

const EXIF_PREFIX: &[u8] = b"Exif\0\0";
const XMP_PREFIX: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const ICC_PREFIX: &[u8] = b"ICC_PROFILE\0";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The EXIF tag of IFD0's pointer to the GPS IFD.
const GPS_INFO_TAG: u16 = 0x8825;

/// An RGB gradient: red = x, green = y, blue constant, each scaled to 0..=255.
fn gradient(width: u32, height: u32) -> Vec<u8> {
    let scale = |v: u32, size: u32| (u64::from(v) * 255 / u64::from(size.max(2) - 1)) as u8;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[scale(x, width), scale(y, height), 96]);
        }
    }
    pixels
}

/// `gradient` with alpha: the left half fully transparent (and black), the
/// right half opaque.
fn gradient_with_alpha(width: u32, height: u32) -> Vec<u8> {
    gradient(width, height)
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, rgb)| {
            let x = i as u64 % u64::from(width);
            if x < u64::from(width / 2) {
                [0, 0, 0, 0]
            } else {
                [rgb[0], rgb[1], rgb[2], 255]
            }
        })
        .collect()
}

/// Run an encoder into a fresh buffer.
fn encoded(make: impl FnOnce(&mut Vec<u8>) -> ImageResult<()>) -> Vec<u8> {
    let mut out = Vec::new();
    match make(&mut out) {
        Ok(()) => out,
        // Only for sizes no encoder takes (0, or over 65535 for JPEG): an
        // empty "image", which the calling test sees as undecodable.
        Err(_) => Vec::new(),
    }
}

/// A plain JPEG (quality 90) of a `width`×`height` gradient, no metadata.
/// Empty if the size is one JPEG cannot hold (0, or over 65535).
#[must_use]
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let pixels = gradient(width, height);
    encoded(|out| {
        JpegEncoder::new_with_quality(out, 90).write_image(
            &pixels,
            width,
            height,
            ExtendedColorType::Rgb8,
        )
    })
}

/// A camera-like JPEG: [`jpeg`] with, right after SOI, an APP1 EXIF segment
/// (IFD0 pointing at a GPS IFD with latitude and longitude), then an APP1
/// XMP packet with the same position and an APP2 ICC profile.
#[must_use]
pub fn jpeg_with_gps_exif(width: u32, height: u32) -> Vec<u8> {
    with_jpeg_segments(&jpeg(width, height), None)
}

/// [`jpeg_with_gps_exif`] whose EXIF also has an Orientation tag
/// (1..=8; 6 means "rotate 90° clockwise to display"). The pixels are
/// stored as `width`×`height`, so an upright result is `height`×`width`
/// for orientations 5 to 8.
#[must_use]
pub fn jpeg_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    with_jpeg_segments(&jpeg(width, height), Some(orientation))
}

fn with_jpeg_segments(jpeg: &[u8], orientation: Option<u16>) -> Vec<u8> {
    let Some(rest) = jpeg.strip_prefix(&[0xFF, 0xD8]) else {
        return jpeg.to_vec();
    };
    let mut out = vec![0xFF, 0xD8];
    out.extend(jpeg_segment(0xE1, &[EXIF_PREFIX, &exif_tiff(orientation)]));
    out.extend(jpeg_segment(0xE1, &[XMP_PREFIX, xmp().as_bytes()]));
    // One ICC chunk: sequence number 1 of 1.
    out.extend(jpeg_segment(0xE2, &[ICC_PREFIX, &[1, 1], &dummy_icc()]));
    out.extend_from_slice(rest);
    out
}

fn jpeg_segment(marker: u8, parts: &[&[u8]]) -> Vec<u8> {
    let payload: Vec<u8> = parts.concat();
    let length = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    let mut segment = vec![0xFF, marker];
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend(payload);
    segment
}

/// A little-endian TIFF block: IFD0 with an optional Orientation and the
/// GPSInfo pointer; the GPS IFD with version, latitude and longitude.
fn exif_tiff(orientation: Option<u16>) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const BYTE: u16 = 1;
    const RATIONAL: u16 = 5;
    let ifd_len = |entries: usize| 2 + 12 * entries + 4;

    let ifd0_entries = 1 + usize::from(orientation.is_some());
    let ifd0 = 8;
    let gps_ifd = ifd0 + ifd_len(ifd0_entries);
    let latitude = gps_ifd + ifd_len(5);
    let longitude = latitude + 24;
    let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX).to_le_bytes();

    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&offset(ifd0));
    let entry = |tiff: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&count.to_le_bytes());
        tiff.extend_from_slice(&value);
    };

    // IFD0, entries in tag order.
    tiff.extend_from_slice(&u16::try_from(ifd0_entries).unwrap_or(0).to_le_bytes());
    if let Some(orientation) = orientation {
        let [lo, hi] = orientation.to_le_bytes();
        entry(&mut tiff, 0x0112, SHORT, 1, [lo, hi, 0, 0]);
    }
    entry(&mut tiff, GPS_INFO_TAG, LONG, 1, offset(gps_ifd));
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no IFD1

    // The GPS IFD.
    tiff.extend_from_slice(&5u16.to_le_bytes());
    entry(&mut tiff, 0x0000, BYTE, 4, [2, 3, 0, 0]); // GPSVersionID 2.3
    entry(&mut tiff, 0x0001, ASCII, 2, *b"N\0\0\0"); // GPSLatitudeRef
    entry(&mut tiff, 0x0002, RATIONAL, 3, offset(latitude)); // GPSLatitude
    entry(&mut tiff, 0x0003, ASCII, 2, *b"E\0\0\0"); // GPSLongitudeRef
    entry(&mut tiff, 0x0004, RATIONAL, 3, offset(longitude)); // GPSLongitude
    tiff.extend_from_slice(&0u32.to_le_bytes());

    // Degrees, minutes, seconds: 52°22'12.34", 4°53'42.6".
    for (numerator, denominator) in [
        (52u32, 1u32),
        (22, 1),
        (1234, 100),
        (4, 1),
        (53, 1),
        (426, 10),
    ] {
        tiff.extend_from_slice(&numerator.to_le_bytes());
        tiff.extend_from_slice(&denominator.to_le_bytes());
    }
    tiff
}

fn xmp() -> &'static str {
    concat!(
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">"#,
        r#"<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,22.2057N" exif:GPSLongitude="4,53.71E"/>"#,
        r#"</rdf:RDF></x:xmpmeta>"#
    )
}

/// Not a usable profile: only the signature a reader checks first ("acsp"
/// at 36), which is all a stripper or a probe needs.
fn dummy_icc() -> Vec<u8> {
    let mut icc = vec![0u8; 128];
    icc[..4].copy_from_slice(&128u32.to_be_bytes());
    icc[36..40].copy_from_slice(b"acsp");
    icc
}

/// A PNG (8-bit RGB) of a `width`×`height` gradient, no metadata.
#[must_use]
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let pixels = gradient(width, height);
    encoded(|out| PngEncoder::new(out).write_image(&pixels, width, height, ExtendedColorType::Rgb8))
}

/// A PNG (8-bit RGBA) whose left half is fully transparent black and right
/// half the opaque gradient.
#[must_use]
pub fn png_with_alpha(width: u32, height: u32) -> Vec<u8> {
    let pixels = gradient_with_alpha(width, height);
    encoded(|out| {
        PngEncoder::new(out).write_image(&pixels, width, height, ExtendedColorType::Rgba8)
    })
}

/// [`png`] with metadata chunks before the image data: iCCP (a dummy
/// profile), eXIf (the GPS EXIF of [`jpeg_with_gps_exif`]), an iTXt XMP
/// packet and a tEXt comment.
#[must_use]
pub fn png_with_metadata(width: u32, height: u32) -> Vec<u8> {
    let plain = png(width, height);
    // Signature (8) + IHDR chunk (4 + 4 + 13 + 4).
    let Some((head, rest)) = plain.split_at_checked(33) else {
        return plain;
    };
    let mut out = head.to_vec();
    out.extend(png_chunk(
        b"iCCP",
        &[b"dummy\0\0".as_slice(), &zlib_stored(&dummy_icc())].concat(),
    ));
    out.extend(png_chunk(b"eXIf", &exif_tiff(None)));
    out.extend(png_chunk(
        b"iTXt",
        &[b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), xmp().as_bytes()].concat(),
    ));
    out.extend(png_chunk(b"tEXt", b"Comment\0shot at home"));
    out.extend_from_slice(rest);
    out
}

/// A tiny PNG whose header claims `width`×`height` (with a correct CRC) but
/// whose image data is empty: a decompression bomb's shape without its
/// payload. Anything that tries to decode it fails; only a header check
/// answers "too many pixels".
#[must_use]
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // 8-bit RGB, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = PNG_SIGNATURE.to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IDAT", &zlib_stored(&[])));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut chunk = length.to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xFFFF).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A lossless WebP of a `width`×`height` gradient, no metadata.
#[must_use]
pub fn webp(width: u32, height: u32) -> Vec<u8> {
    let pixels = gradient(width, height);
    encoded(|out| {
        WebPEncoder::new_lossless(out).write_image(&pixels, width, height, ExtendedColorType::Rgb8)
    })
}

/// [`webp`] in the extended format (VP8X) with an EXIF chunk carrying
/// GPS and the given Orientation, and an XMP chunk.
#[must_use]
pub fn webp_with_gps_exif(width: u32, height: u32, orientation: Option<u16>) -> Vec<u8> {
    let plain = webp(width, height);
    // RIFF header (12), then the one image chunk (VP8L).
    let Some(image_chunk) = plain.get(12..) else {
        return plain;
    };
    let mut vp8x = vec![0x08 | 0x04, 0, 0, 0]; // EXIF and XMP flags
    vp8x.extend_from_slice(&width.saturating_sub(1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&height.saturating_sub(1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(riff_chunk(b"VP8X", &vp8x));
    body.extend_from_slice(image_chunk);
    body.extend(riff_chunk(b"EXIF", &exif_tiff(orientation)));
    body.extend(riff_chunk(b"XMP ", xmp().as_bytes()));
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend(body);
    out
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    chunk.extend_from_slice(data);
    if data.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
}

/// A minimal valid one-page PDF (1.4), with a correct cross-reference table.
#[must_use]
pub fn pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ];
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        table.push_str(&format!("{offset:010} 00000 n \n"));
    }
    table.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.extend_from_slice(table.as_bytes());
    out
}

/// Metadata blocks found in a JPEG, PNG or WebP: (kind, payload), where
/// kind is "exif", "xmp" or "icc" and an EXIF payload starts at its TIFF
/// header.
fn metadata_blocks(bytes: &[u8]) -> Vec<(&'static str, &[u8])> {
    let mut blocks = Vec::new();
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut at = 2;
        // Segments up to the first scan.
        while let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) {
            if marker == 0xDA || marker == 0xD9 {
                break;
            }
            if marker == 0xFF || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                at += 1 + usize::from(marker != 0xFF);
                continue;
            }
            let Some(length) = bytes.get(at + 2..at + 4) else {
                break;
            };
            let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
            let Some(payload) = bytes.get(at + 4..at + 2 + length.max(2)) else {
                break;
            };
            match marker {
                0xE1 if payload.starts_with(EXIF_PREFIX) => {
                    blocks.push(("exif", &payload[EXIF_PREFIX.len()..]));
                }
                0xE1 if payload.starts_with(XMP_PREFIX) => blocks.push(("xmp", payload)),
                0xE2 if payload.starts_with(ICC_PREFIX) => blocks.push(("icc", payload)),
                _ => {}
            }
            at += 2 + length;
        }
    } else if bytes.starts_with(PNG_SIGNATURE) {
        let mut at = PNG_SIGNATURE.len();
        while let Some(header) = bytes.get(at..at + 8) {
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            let Some(data) = at
                .checked_add(8 + length)
                .and_then(|end| bytes.get(at + 8..end))
            else {
                break;
            };
            match &header[4..8] {
                b"eXIf" => blocks.push(("exif", data)),
                b"iCCP" => blocks.push(("icc", data)),
                b"iTXt" if data.starts_with(b"XML:com.adobe.xmp\0") => blocks.push(("xmp", data)),
                _ => {}
            }
            at += 12 + length;
        }
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        let mut at = 12;
        while let Some(header) = bytes.get(at..at + 8) {
            let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            let Some(data) = at
                .checked_add(8 + length)
                .and_then(|end| bytes.get(at + 8..end))
            else {
                break;
            };
            match &header[..4] {
                b"EXIF" => blocks.push(("exif", data.strip_prefix(EXIF_PREFIX).unwrap_or(data))),
                b"ICCP" => blocks.push(("icc", data)),
                b"XMP " => blocks.push(("xmp", data)),
                _ => {}
            }
            at += 8 + length + length % 2;
        }
    }
    blocks
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whether `bytes` (a JPEG, PNG or WebP) carries EXIF: an APP1 Exif
/// segment, an eXIf or EXIF chunk, or an `Exif\0\0` marker anywhere.
#[must_use]
pub fn has_exif(bytes: &[u8]) -> bool {
    metadata_blocks(bytes)
        .iter()
        .any(|(kind, _)| *kind == "exif")
        || contains(bytes, EXIF_PREFIX)
}

/// Whether `bytes` carries a position: an EXIF block (found as in
/// [`has_exif`], or any TIFF header after an `Exif\0\0` marker) whose IFD0
/// points at a GPS IFD, or XMP's `GPSLatitude` anywhere.
#[must_use]
pub fn has_gps(bytes: &[u8]) -> bool {
    let in_blocks = metadata_blocks(bytes)
        .iter()
        .any(|(kind, payload)| *kind == "exif" && tiff_has_gps(payload));
    let after_markers = bytes
        .windows(EXIF_PREFIX.len())
        .enumerate()
        .filter(|(_, window)| *window == EXIF_PREFIX)
        .any(|(at, _)| tiff_has_gps(&bytes[at + EXIF_PREFIX.len()..]));
    in_blocks || after_markers || contains(bytes, b"GPSLatitude")
}

/// Whether `bytes` carries an XMP packet (segment, chunk, or the namespace
/// URI anywhere).
#[must_use]
pub fn has_xmp(bytes: &[u8]) -> bool {
    metadata_blocks(bytes)
        .iter()
        .any(|(kind, _)| *kind == "xmp")
        || contains(bytes, b"http://ns.adobe.com/xap/1.0/")
        || contains(bytes, b"adobe:ns:meta")
}

/// Whether `bytes` carries an ICC profile (APP2 segment, iCCP or ICCP chunk).
#[must_use]
pub fn has_icc(bytes: &[u8]) -> bool {
    metadata_blocks(bytes)
        .iter()
        .any(|(kind, _)| *kind == "icc")
        || contains(bytes, ICC_PREFIX)
}

/// Whether a TIFF block's IFD0 has a GPSInfo (0x8825) entry.
fn tiff_has_gps(tiff: &[u8]) -> bool {
    let read16 = |at: usize, little: bool| {
        let b = tiff.get(at..at + 2)?;
        Some(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let little = if tiff.starts_with(b"II*\0") {
        true
    } else if tiff.starts_with(b"MM\0*") {
        false
    } else {
        return false;
    };
    let Some(ifd0) = tiff.get(4..8).map(|b| {
        let b = [b[0], b[1], b[2], b[3]];
        let offset = if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        };
        usize::try_from(offset).unwrap_or(usize::MAX)
    }) else {
        return false;
    };
    let Some(count) = read16(ifd0, little) else {
        return false;
    };
    (0..usize::from(count)).any(|i| {
        ifd0.checked_add(2 + 12 * i)
            .and_then(|entry| read16(entry, little))
            == Some(GPS_INFO_TAG)
    })
}
