//! Deciding whether to accept an uploaded media object, and what to store.
//!
//! [`inspect`] checks, in this order:
//!
//! 1. the size the client declared against the bytes received;
//! 2. the declared content type against the four the service takes
//!    (`image/jpeg`, `image/png`, `image/webp`, `application/pdf`);
//! 3. the declared type against the real one, read from the magic bytes;
//! 4. for images, the dimensions, read from the format's header by this
//!    module (no decoder involved) and refused above [`MAX_PIXELS`] before a
//!    single pixel buffer is allocated;
//! 5. for images, that the whole image decodes, under [`image::Limits`]
//!    pinned to those dimensions and [`MAX_DECODE_BYTES`].
//!
//! An accepted image is stored as a fresh encoding of its decoded pixels,
//! turned upright by its EXIF orientation first. Nothing but pixels survives
//! the round trip: EXIF (GPS included), XMP, IPTC, ICC profiles, PNG text
//! chunks and comments are all left behind, and no encoder is given any of
//! them to write back. A PDF is stored as received (it is not parsed).

use std::fmt;
use std::io::Cursor;

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::{CompressionType, FilterType, PngDecoder, PngEncoder};
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, GenericImageView, ImageDecoder, ImageEncoder, ImageError,
    ImageResult, Limits,
};
use sha2::{Digest, Sha256};

/// The most pixels (width × height, before orientation) an image may have.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The longest side of a thumbnail, in pixels. Smaller images keep their size.
pub const THUMBNAIL_MAX_SIDE: u32 = 256;

/// The most bytes a decoder may allocate for one image (the decoded pixel
/// buffer counts). 40 MP of 8-bit RGB is 120 MB; a 16-bit RGBA PNG of that
/// size (320 MB) is refused as [`Rejection::TooManyPixels`].
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The quality a stored JPEG is re-encoded at.
pub const JPEG_QUALITY: u8 = 90;

/// The quality thumbnails are encoded at.
pub const THUMBNAIL_QUALITY: u8 = 80;

/// The longest [`Rejection::Undecodable`] / [`Rejection::UnsupportedType`]
/// text kept, in bytes: decoder messages and client headers can be long.
const MAX_MESSAGE_LEN: usize = 200;

/// An upload that passed inspection, and what to store for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What to store. For an image: a fresh encoding of its upright pixels,
    /// without any metadata. For a PDF: the bytes received.
    pub body: Vec<u8>,
    /// The content type, as declared (and confirmed): one of `image/jpeg`,
    /// `image/png`, `image/webp` or `application/pdf`.
    pub content_type: &'static str,
    /// The stored image's width, after orientation; `None` for a PDF.
    pub width: Option<u32>,
    /// The stored image's height, after orientation; `None` for a PDF.
    pub height: Option<u32>,
    /// Lowercase hex SHA-256 of [`Accepted::body`].
    pub sha256: String,
    /// For an image: a JPEG of at most [`THUMBNAIL_MAX_SIDE`] pixels on its
    /// longest side (never upscaled), same aspect ratio, with any
    /// transparency flattened onto white. `None` for a PDF.
    pub thumbnail: Option<Vec<u8>>,
}

impl fmt::Debug for Accepted {
    // The bodies are up to megabytes: show their sizes, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("content_type", &self.content_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("sha256", &self.sha256)
            .field(
                "thumbnail",
                &self
                    .thumbnail
                    .as_ref()
                    .map(|t| format!("<{} bytes>", t.len())),
            )
            .finish()
    }
}

/// Why an upload was refused. [`Rejection::code`] is the stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes received are not as many as the client declared.
    #[error("declared a size of {declared} bytes but sent {actual}")]
    SizeMismatch {
        /// The size the client declared.
        declared: u64,
        /// The size received.
        actual: u64,
    },
    /// The content is not of the (supported) type the client declared.
    #[error("declared {declared} but the content is {}", .detected.unwrap_or("of an unrecognised type"))]
    TypeMismatch {
        /// The declared type, normalised.
        declared: &'static str,
        /// The type the magic bytes say, if recognised (this may be a type
        /// the service does not take, such as `image/heic`).
        detected: Option<&'static str>,
    },
    /// The declared content type is not one the service takes. Holds the
    /// declared value (truncated if long).
    #[error("content type {0:?} is not supported")]
    UnsupportedType(String),
    /// The image is too large to process: more than [`MAX_PIXELS`] pixels
    /// by its header, or (a deep-colour image) more than
    /// [`MAX_DECODE_BYTES`] to decode.
    #[error("a {width}x{height} image is too large (at most {MAX_PIXELS} pixels)")]
    TooManyPixels {
        /// The width in the image's header.
        width: u32,
        /// The height in the image's header.
        height: u32,
    },
    /// The content does not decode as the type it claims (truncated,
    /// corrupt, or a variant the decoder does not support). Holds the
    /// reason, truncated.
    #[error("the content does not decode: {0}")]
    Undecodable(String),
}

impl Rejection {
    /// The stable kebab-case code of this rejection, for API responses.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::SizeMismatch { .. } => "size-mismatch",
            Self::TypeMismatch { .. } => "type-mismatch",
            Self::UnsupportedType(_) => "unsupported-type",
            Self::TooManyPixels { .. } => "too-many-pixels",
            Self::Undecodable(_) => "undecodable",
        }
    }

    fn undecodable(reason: impl fmt::Display) -> Self {
        Self::Undecodable(truncate(reason.to_string().trim().to_owned()))
    }
}

/// Inspect `bytes` uploaded as `declared_type` with `declared_size`.
///
/// `declared_type` is compared on its essence, case-insensitively:
/// `Image/JPEG; foo=bar` is `image/jpeg`. See the [module](self) for the
/// order of the checks.
pub fn inspect(
    declared_type: &str,
    declared_size: u64,
    bytes: &[u8],
) -> Result<Accepted, Rejection> {
    let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if actual != declared_size {
        return Err(Rejection::SizeMismatch {
            declared: declared_size,
            actual,
        });
    }
    let Some(declared) = Kind::from_declared(declared_type) else {
        return Err(Rejection::UnsupportedType(truncate(
            declared_type.to_owned(),
        )));
    };
    let detected = Kind::sniff(bytes);
    if detected != Some(declared) {
        return Err(Rejection::TypeMismatch {
            declared: declared.content_type(),
            detected: detected
                .map(Kind::content_type)
                .or_else(|| sniff_other(bytes)),
        });
    }
    match declared {
        Kind::Pdf => Ok(Accepted {
            sha256: sha256_hex(bytes),
            body: bytes.to_vec(),
            content_type: declared.content_type(),
            width: None,
            height: None,
            thumbnail: None,
        }),
        Kind::Image(format) => inspect_image(format, bytes),
    }
}

/// A type the service takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image(ImageKind),
    Pdf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageKind {
    Jpeg,
    Png,
    WebP,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Self::Image(ImageKind::Jpeg) => "image/jpeg",
            Self::Image(ImageKind::Png) => "image/png",
            Self::Image(ImageKind::WebP) => "image/webp",
            Self::Pdf => "application/pdf",
        }
    }

    fn from_declared(declared: &str) -> Option<Self> {
        let essence = declared.split(';').next().unwrap_or_default().trim();
        [
            Self::Image(ImageKind::Jpeg),
            Self::Image(ImageKind::Png),
            Self::Image(ImageKind::WebP),
            Self::Pdf,
        ]
        .into_iter()
        .find(|kind| kind.content_type().eq_ignore_ascii_case(essence))
    }

    /// The type the magic bytes say, among the four.
    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Image(ImageKind::Jpeg))
        } else if bytes.starts_with(PNG_SIGNATURE) {
            Some(Self::Image(ImageKind::Png))
        } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
            Some(Self::Image(ImageKind::WebP))
        } else if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else {
            None
        }
    }
}

/// A few types the service does not take, named in a
/// [`Rejection::TypeMismatch`] so the client learns what it sent.
fn sniff_other(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Some("image/tiff");
    }
    if bytes.starts_with(b"BM") && bytes.len() > 14 {
        return Some("image/bmp");
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return match bytes.get(8..12)? {
            b"avif" | b"avis" => Some("image/avif"),
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
                Some("image/heic")
            }
            _ => None,
        };
    }
    None
}

fn inspect_image(kind: ImageKind, bytes: &[u8]) -> Result<Accepted, Rejection> {
    let (width, height) = header_dimensions(kind, bytes)?;
    if width == 0 || height == 0 {
        return Err(Rejection::undecodable(format!(
            "the header gives a size of {width}x{height}"
        )));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(Rejection::TooManyPixels { width, height });
    }
    // The JPEG decoder runs in lenient mode and fills whatever is missing
    // from a truncated file with grey; the end marker is checked here.
    if kind == ImageKind::Jpeg && !jpeg_has_end(bytes) {
        return Err(Rejection::undecodable(
            "the JPEG is truncated (no end-of-image marker)",
        ));
    }
    let too_large = |err: ImageError| match err {
        ImageError::Limits(_) => Rejection::TooManyPixels { width, height },
        other => Rejection::undecodable(other),
    };

    // The second guard: decoders that honour limits refuse anything larger
    // than the dimensions checked above, and allocations past the budget.
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_BYTES);

    let mut decoder = decoder(kind, bytes, &limits).map_err(too_large)?;
    if decoder.dimensions() != (width, height) {
        let (w, h) = decoder.dimensions();
        return Err(Rejection::undecodable(format!(
            "the header says {width}x{height} but the decoder reads {w}x{h}"
        )));
    }
    // What `ImageReader::decode` does: count the output buffer against the
    // allocation budget, then hand the decoder what is left.
    limits.reserve(decoder.total_bytes()).map_err(too_large)?;
    decoder.set_limits(limits).map_err(too_large)?;
    let orientation = orientation(&mut decoder);

    let mut image = DynamicImage::from_decoder(decoder).map_err(too_large)?;
    image.apply_orientation(orientation);

    let body = encode(kind, &image)
        .map_err(|err| Rejection::undecodable(format_args!("re-encoding failed: {err}")))?;
    let thumbnail = thumbnail(&image)
        .map_err(|err| Rejection::undecodable(format_args!("thumbnail failed: {err}")))?;
    Ok(Accepted {
        sha256: sha256_hex(&body),
        body,
        content_type: Kind::Image(kind).content_type(),
        width: Some(image.width()),
        height: Some(image.height()),
        thumbnail: Some(thumbnail),
    })
}

fn decoder<'a>(
    kind: ImageKind,
    bytes: &'a [u8],
    limits: &Limits,
) -> ImageResult<Box<dyn ImageDecoder + 'a>> {
    let reader = Cursor::new(bytes);
    Ok(match kind {
        ImageKind::Jpeg => Box::new(JpegDecoder::new(reader)?),
        // The PNG decoder takes its limits when made (they bound its text
        // and ICC chunk buffers too).
        ImageKind::Png => Box::new(PngDecoder::with_limits(reader, limits.clone())?),
        ImageKind::WebP => Box::new(WebPDecoder::new(reader)?),
    })
}

/// The EXIF orientation, if any. Unreadable EXIF counts as none: it is
/// about to be dropped anyway.
fn orientation(decoder: &mut dyn ImageDecoder) -> Orientation {
    match decoder.exif_metadata() {
        Ok(Some(exif)) => {
            // WebP and PNG writers disagree on whether the chunk keeps the
            // JPEG APP1 prefix.
            let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(&exif);
            Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms)
        }
        _ => Orientation::NoTransforms,
    }
}

/// Encode the pixels, and nothing else, in the format they came in.
fn encode(kind: ImageKind, image: &DynamicImage) -> ImageResult<Vec<u8>> {
    let mut out = Vec::new();
    let (width, height) = image.dimensions();
    match kind {
        ImageKind::Jpeg => {
            // The decoder gives L8 or Rgb8, rarely La8/Rgba8; JPEG has no alpha.
            let converted;
            let (pixels, color) = match image {
                DynamicImage::ImageLuma8(buf) => (buf.as_raw().as_slice(), ExtendedColorType::L8),
                DynamicImage::ImageRgb8(buf) => (buf.as_raw().as_slice(), ExtendedColorType::Rgb8),
                other => {
                    converted = other.to_rgb8();
                    (converted.as_raw().as_slice(), ExtendedColorType::Rgb8)
                }
            };
            JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
                .write_image(pixels, width, height, color)?;
        }
        // Every colour type the PNG decoder gives, 16-bit included, encodes
        // as itself: lossless.
        ImageKind::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
                .write_image(image.as_bytes(), width, height, image.color().into())?;
        }
        ImageKind::WebP => {
            let converted;
            let (pixels, color) = match image {
                DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)
                | DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_) => (image.as_bytes(), image.color().into()),
                other => {
                    converted = other.to_rgba8();
                    (converted.as_raw().as_slice(), ExtendedColorType::Rgba8)
                }
            };
            WebPEncoder::new_lossless(&mut out).write_image(pixels, width, height, color)?;
        }
    }
    Ok(out)
}

/// The size of `width`×`height`'s thumbnail: the longest side brought down
/// to [`THUMBNAIL_MAX_SIDE`], the other in proportion (at least 1).
fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= THUMBNAIL_MAX_SIDE {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = (u64::from(side) * u64::from(THUMBNAIL_MAX_SIDE) + u64::from(long) / 2)
            / u64::from(long);
        // At most THUMBNAIL_MAX_SIDE, so it fits.
        u32::try_from(scaled).unwrap_or(THUMBNAIL_MAX_SIDE).max(1)
    };
    (scale(width), scale(height))
}

/// A JPEG thumbnail: a box-filtered downscale of the pixels composited onto
/// white. Compositing each source pixel before averaging is what keeps the
/// colour of fully transparent pixels from bleeding into the edges.
fn thumbnail(image: &DynamicImage) -> ImageResult<Vec<u8>> {
    let (width, height) = image.dimensions();
    let (thumb_width, thumb_height) = thumbnail_size(width, height);
    let (tw, th) = (thumb_width as usize, thumb_height as usize);
    // Per thumbnail pixel: red, green and blue sums, and the pixel count.
    let mut sums = vec![[0u64; 4]; tw * th];
    let target = |x: u32, size: u32, thumb_size: usize| {
        (u64::from(x) * thumb_size as u64 / u64::from(size)) as usize
    };
    // Columns are computed as they are met, not tabled: a 40-megapixel
    // image can be 40 million pixels wide.
    for y in 0..height {
        let row = target(y, height, th) * tw;
        for x in 0..width {
            let column = target(x, width, tw);
            let [r, g, b, a] = image.get_pixel(x, y).0;
            let a = u64::from(a);
            let over_white = |c: u8| (u64::from(c) * a + 255 * (255 - a) + 127) / 255;
            let sum = &mut sums[row + column];
            sum[0] += over_white(r);
            sum[1] += over_white(g);
            sum[2] += over_white(b);
            sum[3] += 1;
        }
    }
    let pixels: Vec<u8> = sums
        .iter()
        .flat_map(|&[r, g, b, n]| {
            // Every thumbnail pixel has at least one source pixel (the
            // thumbnail is never larger); each mean is at most 255.
            let n = n.max(1);
            [r, g, b].map(|c| ((c + n / 2) / n).min(255) as u8)
        })
        .collect();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY).write_image(
        &pixels,
        thumb_width,
        thumb_height,
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// The width and height in the image's header, read without a decoder.
fn header_dimensions(kind: ImageKind, bytes: &[u8]) -> Result<(u32, u32), Rejection> {
    let found = match kind {
        ImageKind::Jpeg => jpeg_dimensions(bytes),
        ImageKind::Png => png_dimensions(bytes),
        ImageKind::WebP => webp_dimensions(bytes),
    };
    found.ok_or_else(|| Rejection::undecodable("no readable image header"))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// PNG: IHDR must be the first chunk, 13 bytes, width then height.
fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if be32(bytes, 8)? != 13 || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(bytes, 16)?, be32(bytes, 20)?))
}

/// JPEG: walk the marker segments to the first frame header (SOFn).
fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2; // past SOI
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while *bytes.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        match marker {
            // Markers without a length: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            // Start of scan or end of image before any frame header.
            0xD9 | 0xDA => return None,
            _ => {}
        }
        let length = usize::from(be16(bytes, at)?);
        if length < 2 {
            return None;
        }
        // SOF0..SOF15, less DHT (C4), JPG (C8) and DAC (CC): length,
        // precision, height, width.
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let height = be16(bytes, at + 3)?;
            let width = be16(bytes, at + 5)?;
            return Some((u32::from(width), u32::from(height)));
        }
        at += length;
    }
}

/// Whether a JPEG's marker segments and entropy-coded data run to an EOI
/// marker. Segments are skipped by their length (so a thumbnail inside
/// EXIF does not count); in entropy-coded data 0xFF is followed only by a
/// stuffed 0x00, a restart marker or fill, so the next other marker is
/// found by scanning.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let mut at = 2; // past SOI
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
    {
        at += offset + 1;
        match bytes.get(at) {
            None => return false,
            Some(0xD9) => return true,
            // Stuffed byte, fill, TEM, RSTn: no length.
            Some(0x00 | 0xFF | 0x01 | 0xD0..=0xD7) => {}
            Some(_) => match be16(bytes, at + 1) {
                Some(length) if length >= 2 => at += 1 + usize::from(length),
                _ => return false,
            },
        }
    }
    false
}

/// WebP: the first chunk is VP8X (canvas size), VP8 (lossy key frame) or
/// VP8L (lossless).
fn webp_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let data = 20;
    match bytes.get(12..16)? {
        b"VP8X" => Some((le24(bytes, data + 4)? + 1, le24(bytes, data + 7)? + 1)),
        b"VP8 " => {
            // 3-byte frame tag, then the key frame start code.
            if bytes.get(data + 3..data + 6)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((
                u32::from(le16(bytes, data + 6)? & 0x3FFF),
                u32::from(le16(bytes, data + 8)? & 0x3FFF),
            ))
        }
        b"VP8L" => {
            if *bytes.get(data)? != 0x2F {
                return None;
            }
            let bits = le32(bytes, data + 1)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        _ => None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `text` cut to [`MAX_MESSAGE_LEN`] bytes at a character boundary.
fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
