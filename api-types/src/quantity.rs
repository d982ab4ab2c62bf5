//! Resource quantities (`500m`, `128Mi`, `1.5Gi`, `1e3`) parsed to exact values.
//!
//! A [`ParsedQuantity`] holds its value as an `i128` count of nano-units (10⁻⁹), which is the
//! finest precision Kubernetes keeps: like upstream, parsing rounds anything finer up, away from
//! zero (`0.1n` is `1n`). Values beyond ±(2¹²⁷−1) nano-units (about 1.7·10²⁰ Ei) saturate, as do
//! sums. The quantity also remembers the format it was written in, which decides how
//! [`Display`](fmt::Display) renders it, following upstream's canonical form:
//!
//! - decimal SI (`n u m "" k M G T P E`): the largest suffix with an integer mantissa, the
//!   exponent a multiple of 3, e.g. `0.5` → `500m`, `1000m` → `1`, `1500` → `1500`;
//! - decimal exponent (`1e3`, `1E-3`): the same mantissa with `e<exponent>`, e.g. `1.5e3` → `1500`;
//! - binary SI (`Ki Mi Gi Ti Pi Ei`): the largest power of 1024 with an integer mantissa,
//!   e.g. `1.5Gi` → `1536Mi`; values under 1024 or with a fraction are shown as decimal SI.
//!
//! Comparison and equality look at the value only, never the format.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Nano-units in one unit.
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;

const FORMAT_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";
const DECIMAL_SUFFIXES: [(&str, i64); 10] =
    [("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// Why a string is not a quantity; the messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{input:?}: quantities must match the regular expression '{FORMAT_REGEX}'")]
    Format { input: String },
    #[error("{input:?}: unable to parse quantity's suffix")]
    Suffix { input: String },
}

/// The notation a quantity was written in, kept for rendering it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// `5`, `500m`, `2G`.
    #[default]
    DecimalSI,
    /// `128Mi`, `1Gi`.
    BinarySI,
    /// `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exactly parsed quantity; see the module documentation for the representation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParsedQuantity {
    nanos: i128,
    format: Format,
}

/// Parses a quantity string: `[+-]<digits>[.<digits>]<suffix>`, where the suffix is a decimal SI
/// prefix, a binary SI prefix, or `e`/`E` and a signed integer exponent.
pub fn parse_quantity(s: &str) -> Result<ParsedQuantity, QuantityError> {
    let format_error = || QuantityError::Format { input: s.to_string() };
    let (negative, unsigned) = match (s.strip_prefix('-'), s.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, s),
    };
    let (whole, rest) = split_digits(unsigned);
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after_point) => split_digits(after_point),
        None => ("", rest),
    };
    if (whole.is_empty() && fraction.is_empty()) || !is_suffix_shaped(suffix) {
        return Err(format_error());
    }
    let (format, exponent, shift) =
        interpret_suffix(suffix).ok_or_else(|| QuantityError::Suffix { input: s.to_string() })?;

    let digits = format!("{whole}{fraction}");
    let fraction_len = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    let pow10 = exponent.saturating_sub(fraction_len).saturating_add(9);
    let magnitude = scale_rounding_up(&digits, pow10, shift);
    // Upstream shows binary quantities between 0 and 1 in decimal from the start.
    let format = if format == Format::BinarySI && 0 < magnitude && magnitude < NANOS_PER_UNIT {
        Format::DecimalSI
    } else {
        format
    };
    Ok(ParsedQuantity { nanos: if negative { -magnitude } else { magnitude }, format })
}

/// Parses a `k8s-openapi` quantity, ignoring surrounding whitespace as upstream's JSON decoding does.
pub fn parse(q: &Quantity) -> Result<ParsedQuantity, QuantityError> {
    parse_quantity(q.0.trim())
}

/// Splits off the leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.bytes().take_while(u8::is_ascii_digit).count())
}

/// Whether `s` has the shape upstream accepts after the number: `[eEinumkKMGTP]*[-+]?[0-9]*`.
fn is_suffix_shaped(s: &str) -> bool {
    let rest = s.trim_start_matches(|c| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

/// The suffix's format, power of ten and power of two.
fn interpret_suffix(suffix: &str) -> Option<(Format, i64, u32)> {
    if let Some((_, exponent)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((Format::DecimalSI, *exponent, 0));
    }
    if let Some(power) = BINARY_SUFFIXES.iter().skip(1).position(|s| *s == suffix) {
        let shift = u32::try_from(power + 1).ok()? * 10;
        return Some((Format::BinarySI, 0, shift));
    }
    let exponent = suffix.strip_prefix(['e', 'E'])?;
    Some((Format::DecimalExponent, exponent.parse().ok()?, 0))
}

/// `ceil(digits × 10^pow10 × 2^shift)` for a decimal digit string, saturating at `i128::MAX`.
fn scale_rounding_up(digits: &str, pow10: i64, shift: u32) -> i128 {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return 0;
    }
    let multiplier = 1i128 << shift;
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    if pow10 >= 0 {
        // At least 10^40 > i128::MAX: no need to multiply it out.
        if len.saturating_add(pow10) > 40 {
            return i128::MAX;
        }
        let zeros = "0".repeat(usize::try_from(pow10).unwrap_or(0));
        return parse_saturating(&format!("{digits}{zeros}")).saturating_mul(multiplier);
    }
    let places = pow10.unsigned_abs();
    // digits × 2^shift < 10^(len+19), so dividing by 10^places leaves a non-zero fraction below 1.
    if places >= len.unsigned_abs() + 19 {
        return 1;
    }
    let places = usize::try_from(places).unwrap_or(usize::MAX);
    let (whole, fraction) = digits.split_at(digits.len().saturating_sub(places));
    let leading_zeros = places - fraction.len();
    // Multiply the fraction 0.<zeros><fraction> by 2^shift, from the last digit up: what carries
    // past the decimal point is the integer part, any digit left behind means rounding up.
    let fraction_digits = fraction.bytes().rev().map(|b| i128::from(b - b'0'));
    let mut carry = 0i128;
    let mut inexact = false;
    for digit in fraction_digits.chain(std::iter::repeat_n(0, leading_zeros)) {
        let product = digit * multiplier + carry;
        inexact |= product % 10 != 0;
        carry = product / 10;
    }
    parse_saturating(whole).saturating_mul(multiplier).saturating_add(carry).saturating_add(i128::from(inexact))
}

fn parse_saturating(digits: &str) -> i128 {
    digits.bytes().try_fold(0i128, |n, b| n.checked_mul(10)?.checked_add(i128::from(b - b'0'))).unwrap_or(i128::MAX)
}

impl ParsedQuantity {
    /// A quantity of `nanos` nano-units, to be rendered in `format`.
    pub fn from_nanos(nanos: i128, format: Format) -> Self {
        Self { nanos, format }
    }

    /// `milli` thousandths, in decimal SI (as upstream's `NewMilliQuantity`).
    pub fn from_milli(milli: i64) -> Self {
        Self::from_nanos(i128::from(milli) * NANOS_PER_MILLI, Format::DecimalSI)
    }

    /// `value` whole units, rendered in `format` (as upstream's `NewQuantity`).
    pub fn from_value(value: i64, format: Format) -> Self {
        Self::from_nanos(i128::from(value) * NANOS_PER_UNIT, format)
    }

    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Thousandths, rounded up away from zero and saturating, like upstream's `MilliValue`.
    pub fn to_milli(&self) -> i64 {
        divide_rounding_up(self.nanos, NANOS_PER_MILLI)
    }

    /// Whole units, rounded up away from zero and saturating, like upstream's `Value`.
    pub fn to_value(&self) -> i64 {
        divide_rounding_up(self.nanos, NANOS_PER_UNIT)
    }

    /// The canonical string as a `k8s-openapi` quantity.
    pub fn to_quantity(&self) -> Quantity {
        Quantity(self.to_string())
    }

    /// The mantissa and power of 1024 when the value is a whole number of at least 1Ki.
    fn as_binary(&self) -> Option<(i128, usize)> {
        if self.nanos.unsigned_abs() < 1024 * NANOS_PER_UNIT.unsigned_abs() || self.nanos % NANOS_PER_UNIT != 0 {
            return None;
        }
        let mut mantissa = self.nanos / NANOS_PER_UNIT;
        let mut power = 0;
        while power + 1 < BINARY_SUFFIXES.len() && mantissa % 1024 == 0 {
            mantissa /= 1024;
            power += 1;
        }
        Some((mantissa, power))
    }

    /// The mantissa and power of ten, a multiple of 3, with the fewest trailing zeros.
    fn as_decimal(&self) -> (i128, i64) {
        let mut mantissa = self.nanos;
        let mut exponent: i64 = -9;
        while mantissa != 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        let excess = exponent.rem_euclid(3);
        (mantissa * 10i128.pow(excess.unsigned_abs() as u32), exponent - excess)
    }
}

fn divide_rounding_up(nanos: i128, per: i128) -> i64 {
    let quotient = nanos / per + (nanos % per).signum();
    i64::try_from(quotient).unwrap_or(if quotient < 0 { i64::MIN } else { i64::MAX })
}

impl fmt::Display for ParsedQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if let Some((mantissa, power)) = self.as_binary().filter(|_| self.format == Format::BinarySI) {
            return write!(f, "{mantissa}{}", BINARY_SUFFIXES[power]);
        }
        let (mut mantissa, mut exponent) = self.as_decimal();
        if self.format == Format::DecimalExponent {
            return if exponent == 0 { write!(f, "{mantissa}") } else { write!(f, "{mantissa}e{exponent}") };
        }
        // Beyond E there is no suffix: keep E and a larger mantissa (which cannot overflow, as
        // mantissa × 10^(exponent + 9) is the value in nano-units).
        while exponent > 18 {
            mantissa *= 10;
            exponent -= 1;
        }
        let suffix = DECIMAL_SUFFIXES.iter().find(|(_, e)| *e == exponent).map_or("", |(s, _)| *s);
        write!(f, "{mantissa}{suffix}")
    }
}

impl FromStr for ParsedQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

impl PartialEq for ParsedQuantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for ParsedQuantity {}

impl Hash for ParsedQuantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for ParsedQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Saturating; the result keeps the left side's format unless that side is zero (as upstream).
impl Add for ParsedQuantity {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        let format = if self.is_zero() { rhs.format } else { self.format };
        Self { nanos: self.nanos.saturating_add(rhs.nanos), format }
    }
}

/// Saturating; the result keeps the left side's format unless that side is zero (as upstream).
impl Sub for ParsedQuantity {
    type Output = Self;

    fn sub(self, rhs: Self) -> Self {
        let format = if self.is_zero() { rhs.format } else { self.format };
        Self { nanos: self.nanos.saturating_sub(rhs.nanos), format }
    }
}

impl AddAssign for ParsedQuantity {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for ParsedQuantity {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl Sum for ParsedQuantity {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> ParsedQuantity {
        parse_quantity(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    const GI: i128 = 1 << 30;

    #[test]
    fn parse_computes_exact_nano_units() {
        let cases: &[(&str, i128, Format)] = &[
            ("500m", 500_000_000, Format::DecimalSI),
            ("128Mi", 128 * (1 << 20) * NANOS_PER_UNIT, Format::BinarySI),
            ("1.5Gi", 3 * (GI / 2) * NANOS_PER_UNIT, Format::BinarySI),
            ("1e3", 1000 * NANOS_PER_UNIT, Format::DecimalExponent),
            ("1E3", 1000 * NANOS_PER_UNIT, Format::DecimalExponent),
            ("1e+3", 1000 * NANOS_PER_UNIT, Format::DecimalExponent),
            ("25e-2", 250_000_000, Format::DecimalExponent),
            ("0.1", 100_000_000, Format::DecimalSI),
            (".5", 500_000_000, Format::DecimalSI),
            ("5.", 5 * NANOS_PER_UNIT, Format::DecimalSI),
            ("1.G", NANOS_PER_UNIT * NANOS_PER_UNIT, Format::DecimalSI),
            ("+2", 2 * NANOS_PER_UNIT, Format::DecimalSI),
            ("-2.5k", -2500 * NANOS_PER_UNIT, Format::DecimalSI),
            ("007", 7 * NANOS_PER_UNIT, Format::DecimalSI),
            ("1n", 1, Format::DecimalSI),
            ("3u", 3000, Format::DecimalSI),
            ("1E", 1_000_000_000_000_000_000 * NANOS_PER_UNIT, Format::DecimalSI),
            ("1Ei", (1 << 60) * NANOS_PER_UNIT, Format::BinarySI),
            ("0", 0, Format::DecimalSI),
            ("-0", 0, Format::DecimalSI),
            ("0.000Mi", 0, Format::BinarySI),
            ("0.5Ki", 512 * NANOS_PER_UNIT, Format::BinarySI),
            ("0.001Ki", 1_024_000_000, Format::BinarySI),
            ("0.0001Ki", 102_400_000, Format::DecimalSI),
        ];
        for (input, nanos, format) in cases {
            let got = q(input);
            assert_eq!((got.nanos(), got.format()), (*nanos, *format), "{input}");
        }
    }

    #[test]
    fn parse_rounds_finer_than_nano_up_away_from_zero() {
        let cases: &[(&str, i128)] = &[
            ("0.1n", 1),
            ("1.1n", 2),
            ("-0.1n", -1),
            ("0.0000000001", 1),
            ("0.0000000001Ki", 103),
            ("1e-100", 1),
            ("0.0000000000000000000000000000000000000001Ei", 1),
            ("1.0000000000000000000000000000000000001", NANOS_PER_UNIT + 1),
        ];
        for (input, nanos) in cases {
            assert_eq!(q(input).nanos(), *nanos, "{input}");
        }
    }

    #[test]
    fn parse_saturates_huge_values() {
        for input in ["1e100", "999999999999999999999999999999999999999999", "170141183460469231731687303715884105727E"]
        {
            assert_eq!(q(input).nanos(), i128::MAX, "{input}");
        }
        assert_eq!(q("-1e100").nanos(), -i128::MAX);
        assert_eq!(q("0e100").nanos(), 0);
    }

    #[test]
    fn parse_rejects_malformed_quantities() {
        let format = |s: &str| QuantityError::Format { input: s.to_string() };
        let suffix = |s: &str| QuantityError::Suffix { input: s.to_string() };
        let cases = [
            ("", format("")),
            ("1.2.3", format("1.2.3")),
            ("Mi", format("Mi")),
            ("5X", format("5X")),
            ("--1", format("--1")),
            ("+-1", format("+-1")),
            (".", format(".")),
            ("-", format("-")),
            (" 1", format(" 1")),
            ("1 ", format("1 ")),
            ("1,000", format("1,000")),
            ("1e", suffix("1e")),
            ("1e+", suffix("1e+")),
            ("1ki", suffix("1ki")),
            ("1K", suffix("1K")),
            ("1Ki3", suffix("1Ki3")),
            ("1mm", suffix("1mm")),
            ("1e99999999999999999999", suffix("1e99999999999999999999")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_quantity(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn errors_carry_upstream_wording() {
        let err = parse_quantity("5X").expect_err("bad suffix");
        assert_eq!(
            err.to_string(),
            "\"5X\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn display_renders_the_canonical_form() {
        let cases = [
            ("500m", "500m"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024Ki", "1Mi"),
            ("1536Ki", "1536Ki"),
            ("1024", "1024"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("0.5Mi", "512Ki"),
            ("0.0001Ki", "102400u"),
            ("100Ei", "100Ei"),
            ("2048Ei", "2048Ei"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("0.1", "100m"),
            ("1500", "1500"),
            ("1000", "1k"),
            ("1000000", "1M"),
            ("1500000", "1500k"),
            ("12e1", "120"),
            ("1.5u", "1500n"),
            ("0.1n", "1n"),
            ("1.G", "1G"),
            ("1000E", "1000E"),
            ("-1", "-1"),
            ("-0.5", "-500m"),
            ("+5", "5"),
            ("0", "0"),
            ("0Mi", "0"),
            ("-0.0", "0"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1.5e3", "1500"),
            ("80e-3", "80e-3"),
            ("1e-3", "1e-3"),
            ("1e0", "1"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn canonical_form_parses_to_the_same_value_and_form() {
        for input in ["1.5Gi", "0.5", "1e3", "1.5u", "-0.0001Ki", "1000E", "123456789123456789.123456789"] {
            let first = q(input);
            let again = q(&first.to_string());
            assert_eq!((again.nanos(), again.to_string()), (first.nanos(), first.to_string()), "{input}");
        }
    }

    #[test]
    fn milli_and_value_round_up_away_from_zero() {
        let cases = [
            ("500m", 500, 1),
            ("1.5", 1500, 2),
            ("2", 2000, 2),
            ("-1.5", -1500, -2),
            ("-500m", -500, -1),
            ("1n", 1, 1),
            ("-1n", -1, -1),
            ("0", 0, 0),
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1e3", 1_000_000, 1000),
            ("0.1", 100, 1),
            ("7Ei", i64::MAX, 8_070_450_532_247_928_832),
            ("100Ei", i64::MAX, i64::MAX),
            ("-100Ei", i64::MIN, i64::MIN),
        ];
        for (input, milli, value) in cases {
            assert_eq!((q(input).to_milli(), q(input).to_value()), (milli, value), "{input}");
        }
    }

    #[test]
    fn comparison_ignores_the_format() {
        let cases = [
            ("1000m", "1", Ordering::Equal),
            ("1e3", "1k", Ordering::Equal),
            ("1Ki", "1024", Ordering::Equal),
            ("1Gi", "1G", Ordering::Greater),
            ("500m", "1", Ordering::Less),
            ("-1", "0", Ordering::Less),
            ("1n", "0", Ordering::Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(q(a).cmp(&q(b)), want, "{a} vs {b}");
            assert_eq!(q(a) == q(b), want == Ordering::Equal, "{a} == {b}");
        }
    }

    #[test]
    fn arithmetic_keeps_the_left_format_unless_it_is_zero() {
        let cases = [
            ("1Gi", '+', "512Mi", "1536Mi"),
            ("1", '-', "500m", "500m"),
            ("500m", '+', "500m", "1"),
            ("0", '+', "1Ki", "1Ki"),
            ("1", '+', "1Ki", "1025"),
            ("1Ki", '+', "1", "1025"),
            ("1Ki", '-', "1Ki", "0"),
            ("100m", '-', "1", "-900m"),
            ("1e3", '+', "1e3", "2e3"),
        ];
        for (a, op, b, want) in cases {
            let got = if op == '+' { q(a) + q(b) } else { q(a) - q(b) };
            assert_eq!(got.to_string(), want, "{a} {op} {b}");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let max = ParsedQuantity::from_nanos(i128::MAX, Format::DecimalSI);
        assert_eq!((max + q("1")).nanos(), i128::MAX);
        assert_eq!((ParsedQuantity::from_nanos(i128::MIN, Format::DecimalSI) - q("1")).nanos(), i128::MIN);
    }

    #[test]
    fn sum_and_assign_accumulate() {
        let total: ParsedQuantity = ["100m", "200m", "700m"].into_iter().map(q).sum();
        assert_eq!(total.to_string(), "1");
        let mut free = q("4Gi");
        free -= q("1Gi");
        free += q("512Mi");
        assert_eq!(free.to_string(), "3584Mi");
    }

    #[test]
    fn constructors_and_quantity_conversion_agree_with_parsing() {
        assert_eq!(ParsedQuantity::from_milli(250), q("250m"));
        assert_eq!(ParsedQuantity::from_value(2, Format::BinarySI).to_string(), "2");
        assert_eq!(ParsedQuantity::from_value(2048, Format::BinarySI).to_string(), "2Ki");
        assert_eq!(q("1.5Gi").to_quantity(), Quantity("1536Mi".to_string()));
        assert_eq!(parse(&Quantity(" 2Gi ".to_string())).map(|p| p.to_string()), Ok("2Gi".to_string()));
        assert!(parse(&Quantity("2 Gi".to_string())).is_err());
    }
}
