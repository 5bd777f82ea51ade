//! Amounts of money: a decimal string with an ISO 4217 currency on the wire,
//! integer minor units inside.
//!
//! An amount arrives as text (`"12.34"`) next to a currency code (`"EUR"`);
//! [`Currency::parse`] and [`Money::parse`] check both and turn the amount
//! into a count of the currency's minor units (cents, fils, ...), an `i64`.
//! Nothing here uses floating point: every sum is exact, and
//! [`Money::amount_string`] and [`format_minor`] write the amount back with
//! exactly as many decimals as the currency has.
//!
//! The rules, chosen for exactness over leniency:
//!
//! - A currency code is exactly three **uppercase** ASCII letters naming an
//!   active ISO 4217 code that has a minor unit (see [`Currency`]); `"eur"`
//!   is refused, not normalised, so that what is stored is what was sent.
//! - An amount is `digits` or `digits.digits`, ASCII only, at most
//!   [`MAX_AMOUNT_LEN`] characters. No sign, exponent, whitespace, thousands
//!   separator, leading or trailing `.`. Leading zeros are accepted
//!   (`"05.00"`), as they do not change the value.
//! - At most as many decimals as the currency has (`"5.5"` and `"5.50"` are
//!   fine in USD, `"5.500"` is not, even though the extra digit is zero;
//!   `"5.0"` is refused in JPY, which has no minor unit).
//! - `0 < amount <= `[`MAX_MAJOR_UNITS`] major units.

use std::fmt;

use crate::ValidationError;

/// The largest amount [`Money::parse`] accepts, in major units (dollars,
/// euros, yen...): one million.
pub const MAX_MAJOR_UNITS: i64 = 1_000_000;

/// The longest amount text [`Money::parse`] looks at, in bytes. Longer input
/// is refused before it is read, whatever it holds; the bound leaves room
/// for leading zeros and keeps the digit loop trivially short.
pub const MAX_AMOUNT_LEN: usize = 32;

/// Active ISO 4217 codes with a minor unit, sorted by code (for binary
/// search), each with its number of decimals; see [`Currency`] for the
/// source and what is left out.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), // UAE Dirham
    ("AFN", 2), // Afghani
    ("ALL", 2), // Lek
    ("AMD", 2), // Armenian Dram
    ("AOA", 2), // Kwanza
    ("ARS", 2), // Argentine Peso
    ("AUD", 2), // Australian Dollar
    ("AWG", 2), // Aruban Florin
    ("AZN", 2), // Azerbaijan Manat
    ("BAM", 2), // Convertible Mark
    ("BBD", 2), // Barbados Dollar
    ("BDT", 2), // Taka
    ("BHD", 3), // Bahraini Dinar
    ("BIF", 0), // Burundi Franc
    ("BMD", 2), // Bermudian Dollar
    ("BND", 2), // Brunei Dollar
    ("BOB", 2), // Boliviano
    ("BOV", 2), // Mvdol
    ("BRL", 2), // Brazilian Real
    ("BSD", 2), // Bahamian Dollar
    ("BTN", 2), // Ngultrum
    ("BWP", 2), // Pula
    ("BYN", 2), // Belarusian Ruble
    ("BZD", 2), // Belize Dollar
    ("CAD", 2), // Canadian Dollar
    ("CDF", 2), // Congolese Franc
    ("CHE", 2), // WIR Euro
    ("CHF", 2), // Swiss Franc
    ("CHW", 2), // WIR Franc
    ("CLF", 4), // Unidad de Fomento
    ("CLP", 0), // Chilean Peso
    ("CNY", 2), // Yuan Renminbi
    ("COP", 2), // Colombian Peso
    ("COU", 2), // Unidad de Valor Real
    ("CRC", 2), // Costa Rican Colon
    ("CUP", 2), // Cuban Peso
    ("CVE", 2), // Cabo Verde Escudo
    ("CZK", 2), // Czech Koruna
    ("DJF", 0), // Djibouti Franc
    ("DKK", 2), // Danish Krone
    ("DOP", 2), // Dominican Peso
    ("DZD", 2), // Algerian Dinar
    ("EGP", 2), // Egyptian Pound
    ("ERN", 2), // Nakfa
    ("ETB", 2), // Ethiopian Birr
    ("EUR", 2), // Euro
    ("FJD", 2), // Fiji Dollar
    ("FKP", 2), // Falkland Islands Pound
    ("GBP", 2), // Pound Sterling
    ("GEL", 2), // Lari
    ("GHS", 2), // Ghana Cedi
    ("GIP", 2), // Gibraltar Pound
    ("GMD", 2), // Dalasi
    ("GNF", 0), // Guinean Franc
    ("GTQ", 2), // Quetzal
    ("GYD", 2), // Guyana Dollar
    ("HKD", 2), // Hong Kong Dollar
    ("HNL", 2), // Lempira
    ("HTG", 2), // Gourde
    ("HUF", 2), // Forint
    ("IDR", 2), // Rupiah
    ("ILS", 2), // New Israeli Sheqel
    ("INR", 2), // Indian Rupee
    ("IQD", 3), // Iraqi Dinar
    ("IRR", 2), // Iranian Rial
    ("ISK", 0), // Iceland Krona
    ("JMD", 2), // Jamaican Dollar
    ("JOD", 3), // Jordanian Dinar
    ("JPY", 0), // Yen
    ("KES", 2), // Kenyan Shilling
    ("KGS", 2), // Som
    ("KHR", 2), // Riel
    ("KMF", 0), // Comorian Franc
    ("KPW", 2), // North Korean Won
    ("KRW", 0), // Won
    ("KWD", 3), // Kuwaiti Dinar
    ("KYD", 2), // Cayman Islands Dollar
    ("KZT", 2), // Tenge
    ("LAK", 2), // Lao Kip
    ("LBP", 2), // Lebanese Pound
    ("LKR", 2), // Sri Lanka Rupee
    ("LRD", 2), // Liberian Dollar
    ("LSL", 2), // Loti
    ("LYD", 3), // Libyan Dinar
    ("MAD", 2), // Moroccan Dirham
    ("MDL", 2), // Moldovan Leu
    ("MGA", 2), // Malagasy Ariary
    ("MKD", 2), // Denar
    ("MMK", 2), // Kyat
    ("MNT", 2), // Tugrik
    ("MOP", 2), // Pataca
    ("MRU", 2), // Ouguiya
    ("MUR", 2), // Mauritius Rupee
    ("MVR", 2), // Rufiyaa
    ("MWK", 2), // Malawi Kwacha
    ("MXN", 2), // Mexican Peso
    ("MXV", 2), // Mexican Unidad de Inversion (UDI)
    ("MYR", 2), // Malaysian Ringgit
    ("MZN", 2), // Mozambique Metical
    ("NAD", 2), // Namibia Dollar
    ("NGN", 2), // Naira
    ("NIO", 2), // Cordoba Oro
    ("NOK", 2), // Norwegian Krone
    ("NPR", 2), // Nepalese Rupee
    ("NZD", 2), // New Zealand Dollar
    ("OMR", 3), // Rial Omani
    ("PAB", 2), // Balboa
    ("PEN", 2), // Sol
    ("PGK", 2), // Kina
    ("PHP", 2), // Philippine Peso
    ("PKR", 2), // Pakistan Rupee
    ("PLN", 2), // Zloty
    ("PYG", 0), // Guarani
    ("QAR", 2), // Qatari Rial
    ("RON", 2), // Romanian Leu
    ("RSD", 2), // Serbian Dinar
    ("RUB", 2), // Russian Ruble
    ("RWF", 0), // Rwanda Franc
    ("SAR", 2), // Saudi Riyal
    ("SBD", 2), // Solomon Islands Dollar
    ("SCR", 2), // Seychelles Rupee
    ("SDG", 2), // Sudanese Pound
    ("SEK", 2), // Swedish Krona
    ("SGD", 2), // Singapore Dollar
    ("SHP", 2), // Saint Helena Pound
    ("SLE", 2), // Leone
    ("SOS", 2), // Somali Shilling
    ("SRD", 2), // Surinam Dollar
    ("SSP", 2), // South Sudanese Pound
    ("STN", 2), // Dobra
    ("SVC", 2), // El Salvador Colon
    ("SYP", 2), // Syrian Pound
    ("SZL", 2), // Lilangeni
    ("THB", 2), // Baht
    ("TJS", 2), // Somoni
    ("TMT", 2), // Turkmenistan New Manat
    ("TND", 3), // Tunisian Dinar
    ("TOP", 2), // Pa’anga
    ("TRY", 2), // Turkish Lira
    ("TTD", 2), // Trinidad and Tobago Dollar
    ("TWD", 2), // New Taiwan Dollar
    ("TZS", 2), // Tanzanian Shilling
    ("UAH", 2), // Hryvnia
    ("UGX", 0), // Uganda Shilling
    ("USD", 2), // US Dollar
    ("USN", 2), // US Dollar (Next day)
    ("UYI", 0), // Uruguay Peso en Unidades Indexadas (UI)
    ("UYU", 2), // Peso Uruguayo
    ("UYW", 4), // Unidad Previsional
    ("UZS", 2), // Uzbekistan Sum
    ("VED", 2), // Bolívar Soberano
    ("VES", 2), // Bolívar Soberano
    ("VND", 0), // Dong
    ("VUV", 0), // Vatu
    ("WST", 2), // Tala
    ("XAD", 2), // Arab Accounting Dinar
    ("XAF", 0), // CFA Franc BEAC
    ("XCD", 2), // East Caribbean Dollar
    ("XCG", 2), // Caribbean Guilder
    ("XOF", 0), // CFA Franc BCEAO
    ("XPF", 0), // CFP Franc
    ("YER", 2), // Yemeni Rial
    ("ZAR", 2), // Rand
    ("ZMW", 2), // Zambian Kwacha
    ("ZWG", 2), // Zimbabwe Gold
];

/// A currency: an active ISO 4217 code and its number of decimals.
///
/// Only [`Currency::parse`] (and [`Currency::all`]) make one, so every value
/// is a code from the embedded table: ISO 4217 List One as published by
/// SIX Group, up to and including amendment 180 (in force from 2026-01-01),
/// which is where these recent changes come from:
///
/// - 176: XCG (Caribbean guilder) added, ANG withdrawn (2025);
/// - 177: ZWG (Zimbabwe Gold) added, ZWL withdrawn (2024-09-01);
/// - 178: CUC withdrawn;
/// - 179: XAD (Arab Accounting Dinar, a fund code, 2 decimals) added;
/// - 180: BGN withdrawn (Bulgaria uses EUR from 2026-01-01).
///
/// Fund codes that List One gives a minor unit (BOV, CHE, CHW, CLF, COU,
/// MXV, USN, UYI, UYW, XAD) are kept: they are valid codes with a defined
/// exponent. The entries whose minor unit is "N.A." are left out, since an
/// amount in them cannot be written in minor units: precious metals (XAG,
/// XAU, XPD, XPT), bond-market units (XBA, XBB, XBC, XBD), XDR, XSU, XUA,
/// the testing code XTS and "no currency" XXX. Withdrawn codes (List Three)
/// are refused. A later ISO amendment means editing the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// Parses an ISO 4217 alphabetic code such as `"EUR"`.
    ///
    /// The code must be exactly three uppercase ASCII letters and an active
    /// code with a minor unit. Lowercase (`"eur"`) is refused rather than
    /// normalised. `field` names the input in the error.
    pub fn parse(field: &'static str, code: &str) -> Result<Self, ValidationError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                field,
                "must be an ISO 4217 currency code: three uppercase letters such as \"EUR\"",
            ));
        }
        let found = CURRENCIES
            .binary_search_by(|&(c, _)| c.cmp(code))
            .ok()
            .and_then(|i| CURRENCIES.get(i));
        match found {
            Some(&(code, exponent)) => Ok(Self { code, exponent }),
            // The code is three ASCII uppercase letters here: safe to echo.
            None => Err(ValidationError::new(
                field,
                format!("\"{code}\" is not an active ISO 4217 currency code"),
            )),
        }
    }

    /// Every accepted currency, sorted by code (for documentation, such as
    /// the `enum` of an OpenAPI schema).
    pub fn all() -> impl Iterator<Item = Self> {
        CURRENCIES
            .iter()
            .map(|&(code, exponent)| Self { code, exponent })
    }

    /// The three-letter code, such as `"EUR"`.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The number of decimals of the currency's minor unit: 2 for EUR
    /// (cents), 0 for JPY, 3 for KWD, 4 for CLF.
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// Minor units in one major unit: `10^exponent`. Exponents in the table
    /// are at most 4 (a test checks it), so this cannot overflow.
    fn scale(self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// A positive amount of money of at most [`MAX_MAJOR_UNITS`] major units,
/// held as an integer count of the currency's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    currency: Currency,
    minor: i64,
}

impl Money {
    /// Parses a decimal amount such as `"12.34"` in `currency`; see the
    /// module documentation for the exact rules. `field` names the input in
    /// the error.
    pub fn parse(
        field: &'static str,
        amount: &str,
        currency: Currency,
    ) -> Result<Self, ValidationError> {
        let exponent = usize::from(currency.exponent);
        let syntax = || {
            let reason = if exponent == 0 {
                format!(
                    "must be a whole number of {currency} such as \"1234\": ASCII digits only, \
                     with no sign, decimal point, exponent, spaces or separators"
                )
            } else {
                format!(
                    "must be an amount of {currency} such as \"12.34\": ASCII digits, optionally \
                     followed by '.' and 1 to {exponent} digits, with no sign, exponent, spaces \
                     or separators"
                )
            };
            ValidationError::new(field, reason)
        };
        if amount.len() > MAX_AMOUNT_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_AMOUNT_LEN} characters"),
            ));
        }
        let (whole, fraction) = match amount.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (amount, ""),
        };
        let has_point = whole.len() != amount.len();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // A second '.' lands in `fraction` and fails the digit check there.
        if !digits(whole) || (has_point && !digits(fraction)) {
            return Err(syntax());
        }
        if fraction.len() > exponent {
            let reason = match exponent {
                0 => format!("{currency} has no minor unit: the amount must be a whole number"),
                1 => format!("{currency} allows at most 1 decimal place"),
                _ => format!("{currency} allows at most {exponent} decimal places"),
            };
            return Err(ValidationError::new(field, reason));
        }
        let too_large = || {
            ValidationError::new(
                field,
                format!("must be at most {MAX_MAJOR_UNITS} {currency}"),
            )
        };
        // The fraction padded with zeros to exactly `exponent` digits; at
        // most 4 digits, so it cannot overflow.
        let fraction_minor = fraction
            .bytes()
            .chain(std::iter::repeat_n(b'0', exponent - fraction.len()))
            .try_fold(0_i64, push_digit)
            .ok_or_else(too_large)?;
        let minor = whole
            .bytes()
            .try_fold(0_i64, push_digit)
            .and_then(|major| major.checked_mul(currency.scale()))
            .and_then(|m| m.checked_add(fraction_minor))
            .ok_or_else(too_large)?;
        if minor == 0 {
            return Err(ValidationError::new(field, "must be greater than zero"));
        }
        Self::from_minor(minor, currency).ok_or_else(too_large)
    }

    /// The amount of `minor` minor units of `currency` (1234 EUR cents is
    /// 12.34 EUR), for values read back from storage. `None` when `minor`
    /// is outside what [`Money::parse`] accepts (`1 ..= MAX_MAJOR_UNITS *
    /// 10^exponent`), so that every `Money` obeys the same bounds.
    pub fn from_minor(minor: i64, currency: Currency) -> Option<Self> {
        let max = MAX_MAJOR_UNITS.checked_mul(currency.scale())?;
        (1..=max)
            .contains(&minor)
            .then_some(Self { currency, minor })
    }

    /// The amount in minor units.
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as the wire writes it: exactly as many decimals as the
    /// currency has (`"5.00"` in USD, `"5"` in JPY, `"1.000"` in KWD).
    pub fn amount_string(&self) -> String {
        format_minor(i128::from(self.minor), self.currency)
    }
}

/// Appends one ASCII digit to `acc`; `None` on overflow.
fn push_digit(acc: i64, digit: u8) -> Option<i64> {
    acc.checked_mul(10)?
        .checked_add(i64::from(digit.wrapping_sub(b'0')))
}

/// Writes `minor` minor units of `currency` as a decimal with exactly the
/// currency's number of decimals: `format_minor(123_456, USD)` is
/// `"1234.56"`, `format_minor(5, KWD)` is `"0.005"`.
///
/// Meant for totals: it takes an `i128` so that a sum of any realistic
/// number of [`Money::minor`] values (each at most 10^10) is exact and
/// cannot overflow (it would take about 10^28 of them). Unlike a [`Money`]
/// the total is not bounded: any value is written exactly, zero as
/// `"0.00"` and a negative value with a leading `-`.
pub fn format_minor(minor: i128, currency: Currency) -> String {
    let exponent = usize::from(currency.exponent);
    let digits = minor.unsigned_abs().to_string();
    // Left-pad so there is at least one digit before the point.
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (whole, fraction) = padded.split_at(padded.len() - exponent);
    let sign = if minor < 0 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::parse("currency", code).unwrap()
    }

    fn money(amount: &str, code: &str) -> Result<Money, ValidationError> {
        Money::parse("amount", amount, cur(code))
    }

    fn minor(amount: &str, code: &str) -> i64 {
        money(amount, code).unwrap().minor()
    }

    fn reason(amount: &str, code: &str) -> String {
        let e = money(amount, code).unwrap_err();
        assert_eq!(e.field, "amount", "{amount:?} {code}");
        e.reason
    }

    #[test]
    fn the_table_is_sorted_unique_and_well_formed() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        for &(code, exponent) in CURRENCIES {
            assert_eq!(code.len(), 3, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_uppercase()), "{code}");
            assert!(exponent <= 4, "{code}");
            assert_eq!(Currency::parse("c", code).map(Currency::code), Ok(code));
        }
        assert_eq!(Currency::all().count(), CURRENCIES.len());
        assert_eq!(CURRENCIES.len(), 165);
    }

    #[test]
    fn currencies_carry_their_iso_exponent() {
        let cases = [
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("VND", 0),
            ("XOF", 0),
            ("XAF", 0),
            ("XPF", 0),
            ("CLP", 0),
            ("UGX", 0),
            ("USD", 2),
            ("EUR", 2),
            ("GBP", 2),
            ("CHF", 2),
            ("XCG", 2),
            ("ZWG", 2),
            ("XAD", 2),
            ("MGA", 2),
            ("MRU", 2),
            ("KWD", 3),
            ("BHD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("LYD", 3),
            ("IQD", 3),
            ("CLF", 4),
            ("UYW", 4),
        ];
        for (code, exponent) in cases {
            let c = cur(code);
            assert_eq!((c.code(), c.exponent()), (code, exponent));
            assert_eq!(c.to_string(), code);
        }
    }

    #[test]
    fn currency_codes_must_be_three_uppercase_letters() {
        for bad in [
            "", "US", "USDD", "usd", "Usd", "uSD", "US1", " USD", "USD ", "ÜSD", "U$D",
        ] {
            let e = Currency::parse("currency", bad).unwrap_err();
            assert_eq!(e.field, "currency");
            assert!(e.reason.contains("three uppercase letters"), "{bad:?}");
        }
    }

    #[test]
    fn inactive_and_unit_less_codes_are_refused() {
        let refused = [
            "ABC", "XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XSU", "XUA", "XBA", "XBB",
            "XBC", "XBD", // no minor unit
            "ANG", "ZWL", "CUC", "BGN", "HRK", "SLL", "VEF", "MRO", "STD", "DEM",
            "FRF", // withdrawn
        ];
        for code in refused {
            let e = Currency::parse("currency", code).unwrap_err();
            assert_eq!(e.field, "currency");
            assert_eq!(
                e.reason,
                format!("\"{code}\" is not an active ISO 4217 currency code")
            );
        }
    }

    #[test]
    fn amounts_become_minor_units() {
        assert_eq!(minor("12.34", "USD"), 1234);
        assert_eq!(minor("5", "USD"), 500);
        assert_eq!(minor("5.5", "USD"), 550);
        assert_eq!(minor("5.50", "USD"), 550);
        assert_eq!(minor("0.01", "USD"), 1);
        assert_eq!(minor("0.50", "EUR"), 50);
        assert_eq!(minor("05.00", "EUR"), 500);
        assert_eq!(minor("00.5", "EUR"), 50);
        assert_eq!(minor("000000000000000000000000000001.5", "EUR"), 150);
        assert_eq!(minor("5", "JPY"), 5);
        assert_eq!(minor("1234", "KRW"), 1234);
        assert_eq!(minor("1", "KWD"), 1000);
        assert_eq!(minor("1.5", "KWD"), 1500);
        assert_eq!(minor("0.001", "BHD"), 1);
        assert_eq!(minor("1.2345", "CLF"), 12345);
        assert_eq!(minor("0.0001", "UYW"), 1);
    }

    #[test]
    fn the_bounds_are_inclusive_of_one_million_and_exclusive_of_zero() {
        assert_eq!(minor("1000000", "USD"), 100_000_000);
        assert_eq!(minor("1000000.00", "USD"), 100_000_000);
        assert_eq!(minor("1000000", "JPY"), 1_000_000);
        assert_eq!(minor("1000000.000", "KWD"), 1_000_000_000);
        assert_eq!(minor("1000000.0000", "CLF"), 10_000_000_000);
        assert_eq!(minor("0.01", "USD"), 1);
        assert_eq!(minor("1", "JPY"), 1);
        assert_eq!(minor("0.0001", "CLF"), 1);
        for zero in ["0", "0.00", "00", "0.0", "000000"] {
            assert_eq!(reason(zero, "USD"), "must be greater than zero", "{zero}");
        }
        assert_eq!(reason("0", "JPY"), "must be greater than zero");
        for over in [
            "1000000.01",
            "1000001",
            "1000000.1",
            "9999999.99",
            "01000000.01",
        ] {
            assert_eq!(reason(over, "USD"), "must be at most 1000000 USD", "{over}");
        }
        assert_eq!(reason("1000001", "JPY"), "must be at most 1000000 JPY");
        assert_eq!(reason("1000000.001", "KWD"), "must be at most 1000000 KWD");
        assert_eq!(reason("1000000.0001", "CLF"), "must be at most 1000000 CLF");
    }

    #[test]
    fn overflow_attempts_are_refused_not_wrapped() {
        for huge in [
            "99999999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "92233720368547758.07",
            "18446744073709551616",
            "99999999999999999999999999999999", // 32 digits: the length limit
            "9999999999999999999999999999.99",
        ] {
            assert_eq!(reason(huge, "USD"), "must be at most 1000000 USD", "{huge}");
            assert_eq!(
                reason(huge.trim_end_matches(".99"), "CLF"),
                "must be at most 1000000 CLF"
            );
        }
        assert_eq!(
            reason(&"9".repeat(33), "USD"),
            "must be at most 32 characters"
        );
        assert_eq!(
            reason(&"0".repeat(1000), "USD"),
            "must be at most 32 characters"
        );
    }

    #[test]
    fn decimals_beyond_the_currency_exponent_are_refused() {
        assert_eq!(
            reason("5.500", "USD"),
            "USD allows at most 2 decimal places"
        );
        assert_eq!(
            reason("5.001", "USD"),
            "USD allows at most 2 decimal places"
        );
        assert_eq!(
            reason("0.000", "USD"),
            "USD allows at most 2 decimal places"
        );
        assert_eq!(
            reason("5.5", "JPY"),
            "JPY has no minor unit: the amount must be a whole number"
        );
        assert_eq!(
            reason("5.0", "JPY"),
            "JPY has no minor unit: the amount must be a whole number"
        );
        assert_eq!(
            reason("1.0000", "KWD"),
            "KWD allows at most 3 decimal places"
        );
        assert_eq!(
            reason("1.00000", "CLF"),
            "CLF allows at most 4 decimal places"
        );
    }

    #[test]
    fn malformed_amounts_are_refused() {
        let malformed = [
            "",
            ".",
            "+5",
            "-5",
            "-0",
            "5e2",
            "5E2",
            "1e-2",
            " 5",
            "5 ",
            "5\n",
            "\t5",
            "5.",
            ".5",
            "5..0",
            "5.0.0",
            "1,000",
            "1,00",
            "1 000",
            "1_000",
            "1'000",
            "0x10",
            "١٢",
            "١٢.٣٤",
            "５",
            "5.٣",
            "NaN",
            "inf",
            "$5",
            "5$",
            "5 USD",
            "½",
            "²",
            "5.-1",
            "5.+1",
            "\u{200b}5",
            "5\u{0}",
        ];
        for bad in malformed {
            let r = reason(bad, "USD");
            assert!(
                r.starts_with("must be an amount of USD such as \"12.34\""),
                "{bad:?}: {r}"
            );
            let r = reason(bad, "JPY");
            assert!(
                r.starts_with("must be a whole number of JPY") || r.contains("no minor unit"),
                "{bad:?}: {r}"
            );
        }
        assert!(reason("5.", "JPY").starts_with("must be a whole number of JPY"));
        assert!(reason("1,5", "EUR").contains("1 to 2 digits"));
    }

    #[test]
    fn amount_strings_have_exactly_the_currency_decimals() {
        let cases = [
            ("5", "USD", "5.00"),
            ("5.5", "USD", "5.50"),
            ("12.34", "EUR", "12.34"),
            ("0.01", "GBP", "0.01"),
            ("05.00", "EUR", "5.00"),
            ("000.10", "EUR", "0.10"),
            ("1000000", "USD", "1000000.00"),
            ("5", "JPY", "5"),
            ("007", "JPY", "7"),
            ("1000000", "KRW", "1000000"),
            ("1", "KWD", "1.000"),
            ("0.005", "KWD", "0.005"),
            ("0.05", "BHD", "0.050"),
            ("3.1", "CLF", "3.1000"),
            ("0.0001", "UYW", "0.0001"),
        ];
        for (amount, code, wire) in cases {
            let m = money(amount, code).unwrap();
            assert_eq!(m.amount_string(), wire, "{amount} {code}");
            assert_eq!(m.currency(), cur(code));
            // The written form parses back to the same value.
            assert_eq!(money(wire, code), Ok(m));
        }
    }

    #[test]
    fn from_minor_keeps_the_same_bounds() {
        let usd = cur("USD");
        let m = Money::from_minor(1234, usd).unwrap();
        assert_eq!(
            (m.minor(), m.currency(), m.amount_string().as_str()),
            (1234, usd, "12.34")
        );
        assert_eq!(
            Money::from_minor(100_000_000, usd).map(|m| m.minor()),
            Some(100_000_000)
        );
        assert_eq!(Money::from_minor(100_000_001, usd), None);
        assert_eq!(Money::from_minor(0, usd), None);
        assert_eq!(Money::from_minor(-1, usd), None);
        assert_eq!(Money::from_minor(i64::MIN, usd), None);
        assert_eq!(Money::from_minor(i64::MAX, usd), None);
        assert_eq!(
            Money::from_minor(1_000_000, cur("JPY")).map(|m| m.amount_string()),
            Some("1000000".into())
        );
        assert_eq!(Money::from_minor(1_000_001, cur("JPY")), None);
        assert!(Money::from_minor(10_000_000_000, cur("CLF")).is_some());
        assert_eq!(Money::from_minor(10_000_000_001, cur("CLF")), None);
        assert_eq!(Money::from_minor(1234, usd), money("12.34", "USD").ok());
    }

    #[test]
    fn every_currency_round_trips_its_extremes() {
        for c in Currency::all() {
            let max = MAX_MAJOR_UNITS * c.scale();
            for minor in [1, 7, max / 3, max - 1, max] {
                let m = Money::from_minor(minor, c).unwrap();
                assert_eq!(
                    Money::parse("amount", &m.amount_string(), c),
                    Ok(m),
                    "{c} {minor}"
                );
            }
            assert_eq!(Money::from_minor(max + 1, c), None, "{c}");
        }
    }

    #[test]
    fn ten_thousand_dimes_sum_exactly() {
        let usd = cur("USD");
        let total: i128 = (0..10_000)
            .map(|_| i128::from(money("0.10", "USD").unwrap().minor()))
            .sum();
        assert_eq!(format_minor(total, usd), "1000.00");
        let total: i128 = (0..10_000)
            .map(|_| i128::from(money("0.001", "KWD").unwrap().minor()))
            .sum();
        assert_eq!(format_minor(total, cur("KWD")), "10.000");
    }

    #[test]
    fn large_totals_are_exact() {
        let usd = cur("USD");
        let one = money("999999.99", "USD").unwrap();
        let total: i128 = (0..10_000).map(|_| i128::from(one.minor())).sum();
        assert_eq!(total, 999_999_990_000);
        assert_eq!(format_minor(total, usd), "9999999900.00");
        let max = Money::from_minor(10_000_000_000, cur("CLF")).unwrap();
        let total: i128 = (0..1_000_000).map(|_| i128::from(max.minor())).sum();
        assert_eq!(format_minor(total, cur("CLF")), "1000000000000.0000");
        assert_eq!(
            format_minor(i128::MAX, usd),
            "1701411834604692317316873037158841057.27"
        );
        assert_eq!(
            format_minor(i128::MIN, usd),
            "-1701411834604692317316873037158841057.28"
        );
    }

    #[test]
    fn format_minor_pads_and_signs() {
        let cases = [
            (0, "USD", "0.00"),
            (1, "USD", "0.01"),
            (10, "USD", "0.10"),
            (100, "USD", "1.00"),
            (-5, "USD", "-0.05"),
            (-12345, "USD", "-123.45"),
            (0, "JPY", "0"),
            (-7, "JPY", "-7"),
            (1_000_000_000, "JPY", "1000000000"),
            (0, "KWD", "0.000"),
            (5, "KWD", "0.005"),
            (1234567, "KWD", "1234.567"),
            (1, "CLF", "0.0001"),
            (12345, "UYW", "1.2345"),
        ];
        for (minor, code, text) in cases {
            assert_eq!(format_minor(minor, cur(code)), text, "{minor} {code}");
        }
    }
}
