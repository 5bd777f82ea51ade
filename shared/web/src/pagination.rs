//! Listing parameters: `?limit=&cursor=`, with a default and a cap.

use serde::Deserialize;

use crate::error::ApiError;

/// The page size when the client names none.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// Validated pagination parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParams {
    /// Items per page, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    /// The cursor from the previous page, if any.
    pub cursor: Option<String>,
}

/// The raw query parameters, before validation.
#[derive(Debug, Default, Deserialize)]
pub struct RawPageParams {
    /// `limit` as sent.
    pub limit: Option<String>,
    /// `cursor` as sent.
    pub cursor: Option<String>,
}

impl PageParams {
    /// Validates `limit` (a whole number from 1 to [`MAX_LIMIT`], default
    /// [`DEFAULT_LIMIT`] when absent; `limit=` with no value is not a number,
    /// as the OpenAPI document says) and keeps a non-empty cursor.
    pub fn parse(raw: RawPageParams) -> Result<Self, ApiError> {
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        Ok(Self {
            limit,
            cursor: raw.cursor.filter(|c| !c.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(limit: Option<&str>) -> Result<u32, ApiError> {
        PageParams::parse(RawPageParams {
            limit: limit.map(str::to_owned),
            cursor: None,
        })
        .map(|p| p.limit)
    }

    #[test]
    fn limit_defaults_and_is_capped() {
        assert_eq!(parse(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(parse(Some("1000")).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(
                matches!(parse(Some(bad)), Err(ApiError::Client { field: Some(ref f), .. }) if f == "limit"),
                "{bad}"
            );
        }
    }
}
