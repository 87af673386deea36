//! The masked-PAN guard: a full card number (PAN, primary account number) must never reach
//! the store.
//!
//! A masked PAN keeps at most the first six (or eight) and the last four digits
//! (`411111******1111`). A value is refused when it has a run of more than
//! [`MASKED_PAN_DIGIT_RUN_MAX`] digits (a PAN, or most of one) or more than
//! [`MASKED_PAN_DIGITS_MAX`] digits in all (a PAN written with separators, `4111 1111 1111 1111`).

/// Longest run of consecutive digits a masked PAN may hold.
pub const MASKED_PAN_DIGIT_RUN_MAX: usize = 10;
/// Most digits a masked PAN may hold in all: PCI DSS allows at most the first eight and last four.
pub const MASKED_PAN_DIGITS_MAX: usize = 12;

/// Whether `value` is safe to store as a masked PAN.
pub fn is_masked_pan_safe(value: &str) -> bool {
    let mut run = 0usize;
    let mut total = 0usize;
    for b in value.bytes() {
        if b.is_ascii_digit() {
            run += 1;
            total += 1;
            if run > MASKED_PAN_DIGIT_RUN_MAX || total > MASKED_PAN_DIGITS_MAX {
                return false;
            }
        } else {
            run = 0;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masked_forms_pass() {
        assert!(is_masked_pan_safe("411111******1111"));
        assert!(is_masked_pan_safe("54000000****0005"));
        assert!(is_masked_pan_safe("************1111"));
        assert!(is_masked_pan_safe(""));
        assert!(is_masked_pan_safe("4111111111******"));
    }

    #[test]
    fn full_or_spaced_pans_fail() {
        assert!(!is_masked_pan_safe("4111111111111111"));
        assert!(!is_masked_pan_safe("41111111111*****"));
        assert!(!is_masked_pan_safe("4111 1111 1111 1111"));
        assert!(!is_masked_pan_safe("4111-1111-1111-1111"));
    }

    proptest! {
        #[test]
        fn any_long_digit_run_fails(
            prefix in "[*a-z ]{0,8}",
            digits in "[0-9]{11,19}",
            suffix in "[*0-9]{0,8}",
        ) {
            let value = format!("{prefix}{digits}{suffix}");
            prop_assert!(!is_masked_pan_safe(&value));
        }

        #[test]
        fn six_and_four_always_pass(first in "[0-9]{6}", stars in 2usize..9, last in "[0-9]{4}") {
            let value = format!("{first}{}{last}", "*".repeat(stars));
            prop_assert!(is_masked_pan_safe(&value));
        }
    }
}
