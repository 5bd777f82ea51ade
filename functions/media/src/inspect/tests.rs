use image::{ColorType, ImageFormat, Rgb};

use super::*;
use crate::sample;

fn check(declared_type: &str, bytes: &[u8]) -> Result<Accepted, Rejection> {
    inspect(declared_type, bytes.len() as u64, bytes)
}

fn decode(bytes: &[u8], format: ImageFormat) -> DynamicImage {
    image::load_from_memory_with_format(bytes, format).unwrap()
}

fn assert_thumbnail(accepted: &Accepted, width: u32, height: u32) -> DynamicImage {
    let thumbnail = accepted.thumbnail.as_deref().unwrap();
    assert!(thumbnail.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
    let thumbnail = decode(thumbnail, ImageFormat::Jpeg);
    assert_eq!(thumbnail.dimensions(), (width, height));
    thumbnail
}

#[test]
fn a_gps_tagged_jpeg_is_stored_without_any_metadata() {
    let upload = sample::jpeg_with_gps_exif(640, 480);
    // The probes see what the sample carries, so their "no" below means something.
    assert!(sample::has_exif(&upload));
    assert!(sample::has_gps(&upload));
    assert!(sample::has_xmp(&upload));
    assert!(sample::has_icc(&upload));

    let accepted = check("image/jpeg", &upload).unwrap();

    assert_eq!(accepted.content_type, "image/jpeg");
    assert!(!sample::has_exif(&accepted.body));
    assert!(!sample::has_gps(&accepted.body));
    assert!(!sample::has_xmp(&accepted.body));
    assert!(!sample::has_icc(&accepted.body));
    assert_eq!((accepted.width, accepted.height), (Some(640), Some(480)));
    let stored = decode(&accepted.body, ImageFormat::Jpeg);
    assert_eq!(stored.dimensions(), (640, 480));
    assert_eq!(accepted.sha256, hex::encode(Sha256::digest(&accepted.body)));
    assert_eq!(accepted.sha256.len(), 64);
    assert!(
        accepted
            .sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_ne!(
        accepted.sha256,
        sha256_hex(&upload),
        "the body is a new encoding"
    );
    // 640x480 is 4:3: 256x192.
    let thumbnail = assert_thumbnail(&accepted, 256, 192);
    assert!(!sample::has_gps(accepted.thumbnail.as_deref().unwrap()));
    // The gradient survives: red grows left to right.
    let thumbnail = thumbnail.to_rgb8();
    assert!(thumbnail.get_pixel(250, 96)[0] > thumbnail.get_pixel(5, 96)[0] + 200);
}

#[test]
fn thumbnails_keep_the_aspect_ratio_of_wide_and_tall_images() {
    let wide = check("image/jpeg", &sample::jpeg(1000, 300)).unwrap();
    assert_thumbnail(&wide, 256, 77);
    let tall = check("image/png", &sample::png(300, 1000)).unwrap();
    assert_thumbnail(&tall, 77, 256);
}

#[test]
fn small_images_are_not_upscaled_for_thumbnails() {
    let accepted = check("image/png", &sample::png(100, 50)).unwrap();
    assert_thumbnail(&accepted, 100, 50);
    let accepted = check("image/jpeg", &sample::jpeg(256, 3)).unwrap();
    assert_thumbnail(&accepted, 256, 3);
}

#[test]
fn thumbnail_sizes() {
    assert_eq!(thumbnail_size(1000, 10), (256, 3));
    assert_eq!(thumbnail_size(10, 1000), (3, 256));
    assert_eq!(thumbnail_size(100_000, 1), (256, 1));
    assert_eq!(thumbnail_size(257, 257), (256, 256));
    assert_eq!(thumbnail_size(256, 200), (256, 200));
    assert_eq!(thumbnail_size(1, 1), (1, 1));
}

#[test]
fn transparency_is_kept_in_the_body_and_flattened_onto_white_in_the_thumbnail() {
    let accepted = check("image/png", &sample::png_with_alpha(64, 32)).unwrap();

    let stored = decode(&accepted.body, ImageFormat::Png);
    assert_eq!(stored.color(), ColorType::Rgba8);
    assert_eq!(stored.to_rgba8().get_pixel(0, 0)[3], 0);
    let thumbnail = assert_thumbnail(&accepted, 64, 32).to_rgb8();
    // The transparent (black) left half is white, not black.
    let Rgb([r, g, b]) = *thumbnail.get_pixel(8, 16);
    assert!(r > 245 && g > 245 && b > 245, "{r} {g} {b}");
    // The opaque right half is the gradient (blue is 96 there).
    assert!(thumbnail.get_pixel(56, 16)[2] < 130);
}

#[test]
fn png_metadata_chunks_are_dropped() {
    let upload = sample::png_with_metadata(40, 30);
    assert!(sample::has_exif(&upload));
    assert!(sample::has_gps(&upload));
    assert!(sample::has_xmp(&upload));
    assert!(sample::has_icc(&upload));
    assert!(upload.windows(4).any(|w| w == b"tEXt"));

    let accepted = check("image/png", &upload).unwrap();

    assert!(!sample::has_exif(&accepted.body));
    assert!(!sample::has_gps(&accepted.body));
    assert!(!sample::has_xmp(&accepted.body));
    assert!(!sample::has_icc(&accepted.body));
    for chunk in [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"] {
        assert!(!accepted.body.windows(4).any(|w| w == chunk));
    }
    assert_eq!(
        decode(&accepted.body, ImageFormat::Png).dimensions(),
        (40, 30)
    );
}

#[test]
fn webp_is_stripped_and_turned_upright() {
    let upload = sample::webp_with_gps_exif(64, 32, Some(6));
    assert!(sample::has_exif(&upload));
    assert!(sample::has_gps(&upload));
    assert!(sample::has_xmp(&upload));

    let accepted = check("image/webp", &upload).unwrap();

    assert_eq!(accepted.content_type, "image/webp");
    assert!(!sample::has_exif(&accepted.body));
    assert!(!sample::has_gps(&accepted.body));
    assert!(!sample::has_xmp(&accepted.body));
    assert_eq!((accepted.width, accepted.height), (Some(32), Some(64)));
    assert_eq!(
        decode(&accepted.body, ImageFormat::WebP).dimensions(),
        (32, 64)
    );
    assert_thumbnail(&accepted, 32, 64);
}

#[test]
fn orientation_6_is_applied_to_the_pixels() {
    let accepted = check("image/jpeg", &sample::jpeg_with_orientation(64, 32, 6)).unwrap();

    assert_eq!((accepted.width, accepted.height), (Some(32), Some(64)));
    let stored = decode(&accepted.body, ImageFormat::Jpeg).to_rgb8();
    assert_eq!(stored.dimensions(), (32, 64));
    // Rotated 90° clockwise: the stored left-to-right red gradient now
    // runs top to bottom, and the top-to-bottom green one right to left.
    assert!(stored.get_pixel(16, 60)[0] > stored.get_pixel(16, 3)[0] + 150);
    assert!(stored.get_pixel(2, 32)[1] > stored.get_pixel(29, 32)[1] + 150);
    assert!(!sample::has_exif(&accepted.body));
    assert_thumbnail(&accepted, 32, 64);
}

#[test]
fn orientation_1_keeps_the_image_as_it_is() {
    let accepted = check("image/jpeg", &sample::jpeg_with_orientation(64, 32, 1)).unwrap();
    assert_eq!((accepted.width, accepted.height), (Some(64), Some(32)));
}

#[test]
fn a_pdf_is_stored_as_received() {
    let upload = sample::pdf();

    let accepted = check("application/pdf", &upload).unwrap();

    assert_eq!(accepted.body, upload);
    assert_eq!(accepted.content_type, "application/pdf");
    assert_eq!((accepted.width, accepted.height), (None, None));
    assert_eq!(accepted.thumbnail, None);
    assert_eq!(accepted.sha256, hex::encode(Sha256::digest(&upload)));
}

#[test]
fn the_sample_pdf_has_a_correct_cross_reference_table() {
    let pdf = sample::pdf();
    let text = |from: usize| String::from_utf8_lossy(&pdf[from..]).into_owned();
    let tail = text(pdf.len() - 40);
    let startxref: usize = tail
        .rsplit("startxref\n")
        .next()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let xref = text(startxref);
    assert!(xref.starts_with("xref\n0 4\n0000000000 65535 f \n"));
    for (number, line) in xref.lines().skip(3).take(3).enumerate() {
        assert_eq!(line.len(), 19, "entries are 20 bytes with the newline");
        let offset: usize = line[..10].parse().unwrap();
        assert!(text(offset).starts_with(&format!("{} 0 obj", number + 1)));
    }
    assert!(xref.ends_with("%%EOF\n"));
}

#[test]
fn the_declared_type_is_compared_on_its_essence_ignoring_case() {
    let accepted = check("Image/PNG; charset=binary", &sample::png(8, 8)).unwrap();
    assert_eq!(accepted.content_type, "image/png");
    let accepted = check(" APPLICATION/PDF ", &sample::pdf()).unwrap();
    assert_eq!(accepted.content_type, "application/pdf");
}

#[test]
fn a_png_declared_as_pdf_is_a_type_mismatch() {
    let rejection = check("application/pdf", &sample::png(8, 8)).unwrap_err();
    assert_eq!(
        rejection,
        Rejection::TypeMismatch {
            declared: "application/pdf",
            detected: Some("image/png"),
        }
    );
    assert_eq!(rejection.code(), "type-mismatch");
}

#[test]
fn type_mismatches_name_what_was_sent_when_they_can() {
    let jpeg = check("image/webp", &sample::jpeg(8, 8)).unwrap_err();
    assert_eq!(
        jpeg,
        Rejection::TypeMismatch {
            declared: "image/webp",
            detected: Some("image/jpeg"),
        }
    );
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    assert_eq!(
        check("image/jpeg", heic).unwrap_err(),
        Rejection::TypeMismatch {
            declared: "image/jpeg",
            detected: Some("image/heic"),
        }
    );
    assert_eq!(
        check("image/png", b"hello, world").unwrap_err(),
        Rejection::TypeMismatch {
            declared: "image/png",
            detected: None,
        }
    );
    // "RIFF" alone (a WAV) is not WebP.
    assert!(matches!(
        check("image/webp", b"RIFF\x24\0\0\0WAVEfmt ").unwrap_err(),
        Rejection::TypeMismatch { detected: None, .. }
    ));
}

#[test]
fn unsupported_declared_types_are_refused_whatever_the_content() {
    let gif = b"GIF89a\x01\0\x01\0\0\0\0;";
    assert_eq!(
        check("image/gif", gif).unwrap_err(),
        Rejection::UnsupportedType("image/gif".into())
    );
    let rejection = check("text/plain", &sample::png(8, 8)).unwrap_err();
    assert_eq!(rejection, Rejection::UnsupportedType("text/plain".into()));
    assert_eq!(rejection.code(), "unsupported-type");
    // No alias: image/jpg is not a registered type.
    assert!(matches!(
        check("image/jpg", &sample::jpeg(8, 8)).unwrap_err(),
        Rejection::UnsupportedType(_)
    ));
}

#[test]
fn the_size_is_checked_first() {
    let upload = sample::png(8, 8);
    let actual = upload.len() as u64;

    let rejection = inspect("image/png", actual + 1, &upload).unwrap_err();
    assert_eq!(
        rejection,
        Rejection::SizeMismatch {
            declared: actual + 1,
            actual,
        }
    );
    assert_eq!(rejection.code(), "size-mismatch");
    // Even before the type: a wrong size of an unsupported type.
    assert_eq!(
        inspect("text/plain", 0, &upload).unwrap_err().code(),
        "size-mismatch"
    );
}

#[test]
fn a_png_header_claiming_50_megapixels_is_refused_without_decoding() {
    let bomb = sample::png_header_only(10_000, 5_000);
    assert!(bomb.len() < 100);

    let rejection = check("image/png", &bomb).unwrap_err();

    assert_eq!(
        rejection,
        Rejection::TooManyPixels {
            width: 10_000,
            height: 5_000,
        }
    );
    assert_eq!(rejection.code(), "too-many-pixels");
    // The same file at an allowed size has no pixels to decode: the
    // refusal above came from the header alone.
    assert_eq!(
        check("image/png", &sample::png_header_only(100, 100))
            .unwrap_err()
            .code(),
        "undecodable"
    );
}

#[test]
fn max_pixels_is_inclusive() {
    // 8000x5000 is exactly MAX_PIXELS: past the pixel check (then it
    // fails to decode: there are no pixels).
    let at_limit = check("image/png", &sample::png_header_only(8_000, 5_000));
    assert_eq!(at_limit.unwrap_err().code(), "undecodable");
    let over = check("image/png", &sample::png_header_only(8_001, 5_000));
    assert_eq!(
        over.unwrap_err(),
        Rejection::TooManyPixels {
            width: 8_001,
            height: 5_000,
        }
    );
}

#[test]
fn jpeg_and_webp_headers_are_checked_too() {
    // A real JPEG whose frame header is rewritten to 60000x60000.
    let mut jpeg = sample::jpeg_with_gps_exif(8, 8);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline frame header");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    assert_eq!(
        check("image/jpeg", &jpeg).unwrap_err(),
        Rejection::TooManyPixels {
            width: 60_000,
            height: 60_000,
        }
    );

    // A WebP whose VP8X canvas says 16384x16384.
    let mut webp = sample::webp_with_gps_exif(8, 8, None);
    assert_eq!(&webp[12..16], b"VP8X");
    webp[24..30].copy_from_slice(&[0xFF, 0x3F, 0, 0xFF, 0x3F, 0]);
    assert_eq!(
        check("image/webp", &webp).unwrap_err(),
        Rejection::TooManyPixels {
            width: 16_384,
            height: 16_384,
        }
    );
}

#[test]
fn header_dimensions_match_the_decoders() {
    for (width, height) in [(1, 1), (640, 480), (33, 517)] {
        assert_eq!(
            jpeg_dimensions(&sample::jpeg_with_gps_exif(width, height)),
            Some((width, height))
        );
        assert_eq!(
            png_dimensions(&sample::png(width, height)),
            Some((width, height))
        );
        assert_eq!(
            webp_dimensions(&sample::webp(width, height)),
            Some((width, height))
        );
        assert_eq!(
            webp_dimensions(&sample::webp_with_gps_exif(width, height, None)),
            Some((width, height))
        );
    }
}

#[test]
fn lossy_webp_headers_are_read() {
    // RIFF, WEBP, a "VP8 " chunk: 3-byte frame tag, start code, then
    // 14-bit width and height (the top 2 bits are scaling).
    let mut webp = b"RIFF\x1a\0\0\0WEBPVP8 \x0e\0\0\0\x10\x02\0\x9d\x01\x2a".to_vec();
    webp.extend_from_slice(&(0xC000u16 | 8000).to_le_bytes());
    webp.extend_from_slice(&5001u16.to_le_bytes());
    assert_eq!(webp_dimensions(&webp), Some((8000, 5001)));
    assert_eq!(
        check("image/webp", &webp).unwrap_err(),
        Rejection::TooManyPixels {
            width: 8000,
            height: 5001,
        }
    );
    webp[23] = 0; // no start code: no header
    assert_eq!(webp_dimensions(&webp), None);
}

#[test]
fn a_truncated_jpeg_is_undecodable() {
    // The decoder alone accepts every cut past the headers of this one.
    let jpeg = sample::jpeg_with_gps_exif(640, 480);
    let n = jpeg.len();
    for cut in [3, 20, 200, n / 4, n / 2, n - 100, n - 2, n - 1] {
        let rejection = check("image/jpeg", &jpeg[..cut]).unwrap_err();
        assert_eq!(rejection.code(), "undecodable", "cut at {cut}: {rejection}");
    }
}

#[test]
fn the_jpeg_end_is_found_past_segments_and_scans() {
    let jpeg = sample::jpeg_with_gps_exif(64, 64);
    assert!(jpeg_has_end(&jpeg));
    assert!(!jpeg_has_end(&jpeg[..jpeg.len() - 1]));
    // Trailing bytes after EOI (as cameras append) are fine.
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"\0\0trailer");
    assert!(jpeg_has_end(&trailing));
    // An EOI inside a segment's payload is not the end.
    let mut fake = vec![0xFF, 0xD8];
    fake.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9]);
    fake.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34]);
    assert!(!jpeg_has_end(&fake));
    fake.extend_from_slice(&[0xFF, 0xD0, 0x56, 0xFF, 0xD9]);
    assert!(jpeg_has_end(&fake));
}

#[test]
fn truncated_png_and_webp_are_undecodable() {
    let png = sample::png(64, 64);
    let rejection = check("image/png", &png[..png.len() / 2]).unwrap_err();
    assert_eq!(rejection.code(), "undecodable", "{rejection}");
    let webp = sample::webp(64, 64);
    let rejection = check("image/webp", &webp[..webp.len() / 2]).unwrap_err();
    assert_eq!(rejection.code(), "undecodable", "{rejection}");
}

#[test]
fn messages_are_bounded() {
    let long = "é".repeat(1000);
    let cut = truncate(long.clone());
    assert!(cut.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
    assert!(long.starts_with(cut.trim_end_matches('…')));

    let declared = format!("image/{}", "x".repeat(10_000));
    let Rejection::UnsupportedType(kept) = check(&declared, b"").unwrap_err() else {
        panic!("not unsupported-type");
    };
    assert!(kept.len() < 300);
}

#[test]
fn every_rejection_has_its_code() {
    let codes = [
        Rejection::SizeMismatch {
            declared: 1,
            actual: 2,
        },
        Rejection::TypeMismatch {
            declared: "image/png",
            detected: None,
        },
        Rejection::UnsupportedType("x".into()),
        Rejection::TooManyPixels {
            width: 1,
            height: 1,
        },
        Rejection::Undecodable("x".into()),
    ]
    .map(|r| r.code());
    assert_eq!(
        codes,
        [
            "size-mismatch",
            "type-mismatch",
            "unsupported-type",
            "too-many-pixels",
            "undecodable"
        ]
    );
}

#[test]
fn accepted_debug_does_not_dump_the_body() {
    let accepted = check("image/png", &sample::png(64, 64)).unwrap();
    let debug = format!("{accepted:?}");
    assert!(debug.contains("bytes>"));
    assert!(debug.len() < 400, "{debug}");
}
