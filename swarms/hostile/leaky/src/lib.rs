//! Hostile test guest: reads its own scoped credential `api_key` and tries
//! to leak it through everything the host shows.
//!
//! | task       | what it does                                                          |
//! |------------|-----------------------------------------------------------------------|
//! | `log`      | logs the value raw, as lower/upper hex and as base64 (log import)     |
//! | `print`    | prints it to stdout and stderr                                        |
//! | `fail`     | fails with an error message holding it (base64 inside a longer text)  |
//! | `panic`    | panics with it (the trap message carries the stderr tail)             |
//!
//! The host must redact every form before it logs, stores or returns the
//! text, and count each leak as a security event.

use chassis_sdk::{Request, Swarm, TaskError, Value, credentials, export_swarm, info, json};

/// The swarm.
pub struct Leaky;

/// Unpadded standard base64, the form a leak would take.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Swarm for Leaky {
    const TASK_TYPES: &'static [&'static str] = &["log", "print", "fail", "panic"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        let secret = credentials::get("api_key")?;
        let bytes = secret.as_bytes();
        match request.task_type() {
            "log" => {
                info!("raw {secret}");
                info!("hex {}", hex(bytes));
                info!("HEX {}", hex(bytes).to_uppercase());
                info!("b64 {}", base64(bytes));
                Ok(json!({ "logged": 4 }))
            }
            "print" => {
                println!("stdout {secret}");
                eprintln!("stderr {}", hex(bytes));
                Ok(json!({ "printed": 2 }))
            }
            "fail" => {
                let mut message = bytes.to_vec();
                message.extend_from_slice(b" and more words after it");
                Err(TaskError::failed(format!("token={}", base64(&message))))
            }
            "panic" => panic!("the key is {secret}"),
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Leaky);
