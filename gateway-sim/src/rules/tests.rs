use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const GOOD_PAN: &str = "4111111111111111";
const BAD_PAN: &str = "4111111111111112";
const TODAY: u16 = 2611;

fn rules() -> HostRules {
    HostRules::default()
}

fn auth(pan: &str, amount: u64, stan: u32) -> SimRequest {
    SimRequest::card(100, pan, "3012", amount, stan)
}

fn reversal(pan: &str, stan: u32, original: u32) -> SimRequest {
    SimRequest {
        mti: 400,
        expiry: None,
        original_stan: Some(original),
        ..SimRequest::card(400, pan, "", 0, stan)
    }
}

fn inquiry(pan: &str, stan: u32) -> SimRequest {
    SimRequest {
        processing_code: *b"310000",
        ..auth(pan, 0, stan)
    }
}

fn balance_of(rules: &HostRules, book: &mut Book, pan: &str) -> u64 {
    rules
        .decide(book, TODAY, &inquiry(pan, 999_999))
        .balance
        .unwrap()
}

#[test]
fn luhn() {
    for good in [
        GOOD_PAN,
        "4012888888881881",
        "5555555555554444",
        "378282246310005",
        "5400000000000005",
        "4000000000000002",
    ] {
        assert!(luhn_valid(good.as_bytes()), "{good}");
    }
    for bad in [
        BAD_PAN,
        "4111 1111 1111 1111",
        "",
        "00000000000",
        "41111111111111111111",
    ] {
        assert!(!luhn_valid(bad.as_bytes()), "{bad}");
    }
    let mut book = Book::default();
    let d = rules().decide(&mut book, TODAY, &auth(BAD_PAN, 100, 1));
    assert_eq!((&d.response_code, d.approval_code), (b"14", None));
    let d = rules().decide(&mut book, TODAY, &auth(GOOD_PAN, 100, 2));
    assert!(d.is_approved());
    assert_eq!(d.approval_code, Some(*b"000001"));
}

#[test]
fn luhn_applies_to_cards_only_unless_configured() {
    let phone = SimRequest {
        account_kind: AccountKind::Phone,
        expiry: None,
        ..auth("821012345678", 100, 1)
    };
    let mut book = Book::default();
    assert!(rules().decide(&mut book, TODAY, &phone).is_approved());
    let all = HostRules {
        luhn: LuhnCheck::All,
        ..rules()
    };
    assert_eq!(all.decide(&mut book, TODAY, &phone).response_code, *b"14");
    let never = HostRules {
        luhn: LuhnCheck::Never,
        ..rules()
    };
    assert!(
        never
            .decide(&mut book, TODAY, &auth(BAD_PAN, 100, 2))
            .is_approved()
    );
}

#[test]
fn expiry() {
    assert!(
        !is_expired(b"2611", 2611),
        "good through the end of the month"
    );
    assert!(is_expired(b"2610", 2611));
    assert!(!is_expired(b"2701", 2612));
    assert!(is_expired(b"2512", 2601));
    assert!(!is_expired(b"0101", 9912), "2101 is after 2099");
    assert!(is_expired(b"9912", 101));
    assert!(is_expired(b"2613", 2611), "month 13");
    assert!(is_expired(b"2600", 2611), "month 0");
    assert!(is_expired(b"26x1", 2611));
    assert!(is_expired(b"261", 2611));
    let mut book = Book::default();
    let expired = SimRequest::card(100, GOOD_PAN, "2001", 100, 1);
    assert_eq!(
        rules().decide(&mut book, TODAY, &expired).response_code,
        *b"54"
    );
    let unchecked = HostRules {
        check_expiry: false,
        ..rules()
    };
    assert!(unchecked.decide(&mut book, TODAY, &expired).is_approved());
}

#[test]
fn debit_credit_and_balance() {
    let rules = HostRules {
        default_balance: 10_000,
        patterns: Vec::new(),
        ..rules()
    };
    let mut book = Book::default();
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 10_000);
    assert!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 4_000, 1))
            .is_approved()
    );
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 6_000);
    let sale = SimRequest {
        mti: 200,
        ..auth(GOOD_PAN, 6_001, 2)
    };
    assert_eq!(rules.decide(&mut book, TODAY, &sale).response_code, *b"51");
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 6_000);
    let refund = SimRequest {
        mti: 200,
        processing_code: *b"200000",
        ..auth(GOOD_PAN, 1_500, 3)
    };
    let d = rules.decide(&mut book, TODAY, &refund);
    assert!(d.is_approved() && d.approval_code.is_some());
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 7_500);
    let sale = SimRequest {
        mti: 200,
        ..auth(GOOD_PAN, 7_500, 4)
    };
    assert!(rules.decide(&mut book, TODAY, &sale).is_approved());
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 0);
    // Another account is untouched.
    assert_eq!(balance_of(&rules, &mut book, "5555555555554444"), 10_000);
}

#[test]
fn balance_inquiry_answers_field_54() {
    let mut book = Book::default();
    let d = rules().decide(&mut book, TODAY, &inquiry(GOOD_PAN, 1));
    assert!(d.is_approved());
    assert_eq!(d.balance, Some(1_000_000_000));
    assert_eq!(balance_field(1_000_000_000, 410), "0002410C001000000000");
    assert_eq!(balance_field(u64::MAX, 1), "0002001C999999999999");
    // Inquiries neither move money nor meet amount patterns.
    let d = rules().decide(
        &mut book,
        TODAY,
        &SimRequest {
            amount: 51,
            ..inquiry(GOOD_PAN, 2)
        },
    );
    assert_eq!(d.balance, Some(1_000_000_000));
}

#[test]
fn reversal_restores_once_and_is_always_acknowledged() {
    let rules = rules();
    let mut book = Book::default();
    assert!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 10_000, 7))
            .is_approved()
    );
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 999_990_000);
    let d = rules.decide(&mut book, TODAY, &reversal(GOOD_PAN, 8, 7));
    assert_eq!((d.response_code, d.approval_code), (*b"00", None));
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
    // Repeated: acknowledged, nothing restored twice.
    assert!(
        rules
            .decide(&mut book, TODAY, &reversal(GOOD_PAN, 9, 7))
            .is_approved()
    );
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
    // Unknown original, other account, no field 90: acknowledged.
    assert!(
        rules
            .decide(&mut book, TODAY, &reversal(GOOD_PAN, 10, 123))
            .is_approved()
    );
    assert!(
        rules
            .decide(&mut book, TODAY, &reversal("5555555555554444", 11, 7))
            .is_approved()
    );
    let no_original = SimRequest {
        original_stan: None,
        ..reversal(GOOD_PAN, 12, 7)
    };
    assert!(rules.decide(&mut book, TODAY, &no_original).is_approved());
    // A declined request left nothing to reverse.
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 151, 13))
            .response_code,
        *b"51"
    );
    rules.decide(&mut book, TODAY, &reversal(GOOD_PAN, 14, 13));
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
    // A reversed refund takes its money back.
    let refund = SimRequest {
        processing_code: *b"200000",
        mti: 200,
        ..auth(GOOD_PAN, 500, 15)
    };
    assert!(rules.decide(&mut book, TODAY, &refund).is_approved());
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_500);
    rules.decide(&mut book, TODAY, &reversal(GOOD_PAN, 16, 15));
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
    // 0420 advice and 0401 repeat are reversals too.
    assert!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 10_000, 17))
            .is_approved()
    );
    let advice = SimRequest {
        mti: 421,
        ..reversal(GOOD_PAN, 18, 17)
    };
    assert!(rules.decide(&mut book, TODAY, &advice).is_approved());
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
}

#[test]
fn amount_patterns() {
    let mut rules = rules();
    rules.patterns.push(AmountPattern {
        amount_suffix: None,
        amount_mod: Some(1_000),
        remainder: 999,
        response_code: ResponseCode(*b"91"),
    });
    rules.patterns.push(AmountPattern::suffix("77", b"00"));
    rules.validate().unwrap();
    let mut book = Book::default();
    for (amount, code) in [
        (51, b"51"),
        (10_051, b"51"),
        (5, b"05"),
        (1_205, b"05"),
        (1_999, b"91"),
        (999, b"91"),
        (77, b"00"),
        (1_000, b"00"),
        (150, b"00"),
    ] {
        let d = rules.decide(&mut book, TODAY, &auth(GOOD_PAN, amount, 1));
        assert_eq!(&d.response_code, code, "{amount}");
        assert_eq!(d.approval_code.is_some(), code == b"00");
    }
    // Refunds meet patterns too.
    let refund = SimRequest {
        processing_code: *b"200000",
        ..auth(GOOD_PAN, 251, 2)
    };
    assert_eq!(
        rules.decide(&mut book, TODAY, &refund).response_code,
        *b"51"
    );
    for bad in [
        AmountPattern::suffix("", b"05"),
        AmountPattern::suffix("5x", b"05"),
        AmountPattern::suffix("1234567890123", b"05"),
        AmountPattern {
            amount_mod: Some(0),
            ..AmountPattern::suffix("", b"05")
        },
        AmountPattern {
            amount_suffix: None,
            amount_mod: Some(10),
            remainder: 10,
            response_code: ResponseCode(*b"05"),
        },
        AmountPattern {
            amount_mod: Some(10),
            ..AmountPattern::suffix("1", b"05")
        },
    ] {
        let rules = HostRules {
            patterns: vec![bad.clone()],
            ..HostRules::default()
        };
        assert!(rules.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn limits_and_explicit_accounts() {
    let rules = HostRules {
        default_limit: Some(50_000),
        accounts: vec![
            AccountRule {
                account: "5555555555554444".into(),
                balance: Some(1_000),
                limit: Some(800),
                response_code: None,
            },
            AccountRule {
                account: "4012888888881881".into(),
                balance: None,
                limit: None,
                response_code: Some(ResponseCode(*b"62")),
            },
        ],
        ..rules()
    };
    let mut book = Book::default();
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 50_001, 1))
            .response_code,
        *b"61"
    );
    assert!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 50_000, 2))
            .is_approved()
    );
    let small = "5555555555554444";
    assert_eq!(balance_of(&rules, &mut book, small), 1_000);
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &auth(small, 801, 3))
            .response_code,
        *b"61"
    );
    assert!(
        rules
            .decide(&mut book, TODAY, &auth(small, 800, 4))
            .is_approved()
    );
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &auth(small, 300, 5))
            .response_code,
        *b"51"
    );
    let blocked = rules.decide(&mut book, TODAY, &auth("4012888888881881", 100, 6));
    assert_eq!(blocked.response_code, *b"62");
}

#[test]
fn network_management_and_unsupported() {
    let rules = rules();
    let mut book = Book::default();
    let network = |code| SimRequest {
        mti: 800,
        network_code: code,
        ..SimRequest::default()
    };
    for code in [1, 2, 301] {
        let d = rules.decide(&mut book, TODAY, &network(Some(code)));
        assert_eq!(
            (d.response_code, d.approval_code, d.balance),
            (*b"00", None, None)
        );
    }
    assert_eq!(
        rules.decide(&mut book, TODAY, &network(None)).response_code,
        *b"30"
    );
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &network(Some(161)))
            .response_code,
        *b"12"
    );
    for other in [
        SimRequest {
            mti: 110,
            ..auth(GOOD_PAN, 100, 1)
        },
        SimRequest {
            mti: 500,
            ..auth(GOOD_PAN, 100, 1)
        },
        SimRequest {
            processing_code: *b"400000",
            ..auth(GOOD_PAN, 100, 1)
        },
    ] {
        assert_eq!(rules.decide(&mut book, TODAY, &other).response_code, *b"12");
    }
    let no_account = SimRequest {
        account: Bytes::new(),
        ..auth(GOOD_PAN, 100, 1)
    };
    assert_eq!(
        rules.decide(&mut book, TODAY, &no_account).response_code,
        *b"30"
    );
}

#[test]
fn approval_codes_are_deterministic() {
    let run = || {
        let mut book = Book::default();
        (1..=3)
            .map(|stan| {
                rules()
                    .decide(&mut book, TODAY, &auth(GOOD_PAN, 100, stan))
                    .approval_code
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
    assert_eq!(run()[2], Some(*b"000003"));
}

#[test]
fn masking() {
    assert_eq!(mask_account(b"4111111111111111"), "411111****1111");
    assert_eq!(mask_account(b"821012345678"), "****5678");
    assert_eq!(mask_account(b"12345678"), "****");
    assert_eq!(mask_account(b""), "****");
}

#[test]
fn dates() {
    assert_eq!(yymm_from_unix_ms(0), 7001);
    assert_eq!(yymm_from_unix_ms(1_795_729_196_000), 2611);
    assert_eq!(yymm_from_unix_ms(951_782_400_000), 2);
    assert_eq!(yymm_from_unix_ms(946_684_799_000), 9912);
}

fn arbitrary_request() -> impl Strategy<Value = SimRequest> {
    (
        (0u16..10_000, proptest::array::uniform6(any::<u8>())),
        proptest::collection::vec(any::<u8>(), 0..24),
        prop_oneof![
            Just(AccountKind::None),
            Just(AccountKind::Card),
            Just(AccountKind::Phone),
            Just(AccountKind::BankAccount)
        ],
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        any::<u64>(),
        (
            any::<u16>(),
            any::<u32>(),
            any::<Option<u32>>(),
            any::<Option<u16>>(),
        ),
    )
        .prop_map(
            |((mti, processing_code), account, account_kind, expiry, amount, rest)| SimRequest {
                mti,
                processing_code,
                account: Bytes::from(account),
                account_kind,
                expiry: expiry.map(Bytes::from),
                amount,
                currency: rest.0,
                stan: rest.1,
                original_stan: rest.2,
                network_code: rest.3,
            },
        )
}

proptest! {
    #[test]
    fn decide_never_panics(
        requests in proptest::collection::vec(arbitrary_request(), 1..40),
        today in any::<u16>(),
        default_balance in any::<u64>(),
        limit in any::<Option<u64>>(),
    ) {
        let rules = HostRules { default_balance, default_limit: limit, ..HostRules::default() };
        let mut book = Book::default();
        for req in &requests {
            let d = rules.decide(&mut book, today, req);
            prop_assert!(d.response_code.iter().all(u8::is_ascii_alphanumeric));
            prop_assert_eq!(d.approval_code.is_some() && !d.is_approved(), false);
        }
    }

    /// Debits and their reversals leave every balance where it started.
    #[test]
    fn reversals_undo_debits(amounts in proptest::collection::vec(1u64..1_000_000, 1..30)) {
        let rules = HostRules { patterns: Vec::new(), ..HostRules::default() };
        let mut book = Book::default();
        for (stan, &amount) in (1u32..).zip(&amounts) {
            rules.decide(&mut book, TODAY, &auth(GOOD_PAN, amount, stan));
        }
        let spent: u64 = amounts.iter().sum();
        prop_assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000 - spent);
        for stan in (1u32..).take(amounts.len()) {
            rules.decide(&mut book, TODAY, &reversal(GOOD_PAN, 500_000 + stan, stan));
        }
        prop_assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), 1_000_000_000);
        prop_assert_eq!(book.remembered(), 0);
    }
}

#[test]
fn a_completion_advice_is_acknowledged_and_moves_nothing_again() {
    let rules = rules();
    let mut book = Book::default();
    let before = balance_of(&rules, &mut book, GOOD_PAN);
    assert_eq!(
        rules
            .decide(&mut book, TODAY, &auth(GOOD_PAN, 700, 1))
            .response_code,
        *b"00"
    );
    for (mti, stan) in [(220, 2), (221, 3)] {
        let advice = SimRequest {
            mti,
            ..auth(GOOD_PAN, 700, stan)
        };
        assert_eq!(advice.operation(), Operation::Completion);
        assert_eq!(
            rules.decide(&mut book, TODAY, &advice).response_code,
            *b"00"
        );
    }
    assert_eq!(balance_of(&rules, &mut book, GOOD_PAN), before - 700);
    // A refund sent as 0220 (processing code 20) is still a credit.
    let refund = SimRequest {
        mti: 220,
        processing_code: *b"200000",
        ..auth(GOOD_PAN, 100, 4)
    };
    assert_eq!(refund.operation(), Operation::Credit);
}
