//! Configuration from the environment: valid, disabled, missing and malformed values. Errors
//! name the variable and never show the key.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use errorwatch_sdk::{env, Options, OptionsError};
use support::*;

fn from(vars: &[(&str, &str)]) -> Result<Options, OptionsError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Options::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn valid_variables_configure_the_client() {
    let options = from(&[
        (env::API_URL, "https://errors.example.com/"),
        (env::API_KEY, API_KEY),
        (env::ENV, "staging"),
        (env::RELEASE, "billing@1.2.3"),
    ])
    .expect("valid");
    assert!(options.is_configured());
    assert_eq!(
        options.event_endpoint().as_deref(),
        Some("https://errors.example.com/api/v1/event")
    );
    let debug = format!("{options:?}");
    assert!(debug.contains("staging") && debug.contains("billing@1.2.3"));
    assert!(!debug.contains(API_KEY), "Debug redacts the key: {debug}");
}

#[test]
fn the_php_sdks_endpoint_name_is_accepted_too() {
    let options = from(&[
        (env::ENDPOINT, "http://127.0.0.1:3333"),
        (env::API_KEY, API_KEY),
    ])
    .expect("valid");
    assert_eq!(
        options.event_endpoint().as_deref(),
        Some("http://127.0.0.1:3333/api/v1/event")
    );
    let both = from(&[
        (env::API_URL, "http://primary:1"),
        (env::ENDPOINT, "http://secondary:2"),
        (env::API_KEY, API_KEY),
    ])
    .expect("valid");
    assert_eq!(
        both.event_endpoint().as_deref(),
        Some("http://primary:1/api/v1/event"),
        "API_URL wins"
    );
}

#[test]
fn nothing_set_or_disabled_is_a_silent_no_op() {
    for vars in [
        vec![],
        vec![(env::API_URL, "https://errors.example.com")],
        vec![
            (env::ENABLED, "false"),
            (env::API_URL, "https://e.example.com"),
            (env::API_KEY, API_KEY),
        ],
        vec![(env::ENABLED, "0")],
    ] {
        let options = from(&vars).expect("no error for unconfigured or disabled");
        assert!(!options.is_configured(), "{vars:?}");
        let client = errorwatch_sdk::Client::new(options).expect("client");
        assert!(!client.is_enabled());
        assert!(client
            .capture_message("nothing happens", errorwatch_sdk::Level::Error)
            .is_none());
        assert!(client.flush(Duration::from_millis(10)));
    }
}

#[test]
fn enabled_without_url_or_key_names_what_is_missing() {
    let err = from(&[(env::ENABLED, "true"), (env::API_KEY, API_KEY)]).unwrap_err();
    assert_eq!(
        err,
        OptionsError::Missing {
            source_name: env::API_URL,
            enabled_by: env::ENABLED
        }
    );
    let err = from(&[
        (env::ENABLED, "yes"),
        (env::API_URL, "https://e.example.com"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("ERRORWATCH_API_KEY"), "{err}");
}

#[test]
fn malformed_values_name_the_variable_and_never_show_the_key() {
    let leaked_key = "ew_live_short!!SECRETISH";
    let long_env = "e".repeat(51);
    let long_release = "r".repeat(201);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                (env::API_URL, "errors.example.com"),
                (env::API_KEY, API_KEY),
            ],
            env::API_URL,
        ),
        (
            vec![
                (env::API_URL, "ftp://errors.example.com"),
                (env::API_KEY, API_KEY),
            ],
            env::API_URL,
        ),
        (
            vec![(env::ENDPOINT, "http://"), (env::API_KEY, API_KEY)],
            env::ENDPOINT,
        ),
        (
            vec![
                (env::API_URL, "https://e.example.com"),
                (env::API_KEY, leaked_key),
            ],
            env::API_KEY,
        ),
        (vec![(env::ENABLED, "maybe")], env::ENABLED),
        (vec![(env::ENV, long_env.as_str())], env::ENV),
        (vec![(env::RELEASE, long_release.as_str())], env::RELEASE),
    ];
    for (vars, variable) in cases {
        let err = from(&vars).expect_err("malformed");
        let message = err.to_string();
        assert!(message.contains(variable), "{message:?} names {variable}");
        assert!(
            !message.contains("SECRETISH") && !message.contains(API_KEY),
            "{message}"
        );
    }
}

#[test]
fn init_with_bad_options_reports_once_and_stays_silent() {
    // try_init returns the error; init would print it and hand back a disabled guard.
    let err = errorwatch_sdk::try_init(Options::new("https://e.example.com", "wrong-key")).err();
    assert!(matches!(
        err,
        Some(OptionsError::InvalidApiKey {
            source_name: "api_key"
        })
    ));
    let bad_rate = Options::new("https://e.example.com", API_KEY).sample_rate(1.5);
    assert!(bad_rate.validate().is_err());
}

#[test]
fn the_process_environment_is_read_by_from_env() {
    // The only test in this binary that touches the process environment, on variables of its
    // own prefix, so it races with nothing.
    std::env::set_var(env::API_URL, "http://127.0.0.1:9/");
    std::env::set_var(env::API_KEY, API_KEY);
    let options = Options::from_env().expect("valid");
    std::env::remove_var(env::API_URL);
    std::env::remove_var(env::API_KEY);
    assert_eq!(
        options.event_endpoint().as_deref(),
        Some("http://127.0.0.1:9/api/v1/event")
    );
}
