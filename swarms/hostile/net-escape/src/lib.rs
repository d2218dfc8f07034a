//! Hostile test guest: tries to open its own network connections through
//! WASI sockets, past the HTTP proxy.
//!
//! Its component imports `wasi:sockets`, which no contract can grant, so the
//! host must refuse to load it.

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, json};

/// The swarm.
pub struct NetEscape;

impl Swarm for NetEscape {
    const TASK_TYPES: &'static [&'static str] = &["connect", "listen"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        let outcome = match request.task_type() {
            "connect" => std::net::TcpStream::connect("169.254.169.254:80").map(|_| "connected"),
            "listen" => std::net::UdpSocket::bind("0.0.0.0:0").map(|_| "bound"),
            other => return Err(TaskError::UnknownTaskType(other.to_string())),
        };
        Ok(match outcome {
            Ok(done) => json!({ "escaped": done }),
            Err(e) => json!({ "error": e.to_string() }),
        })
    }
}

export_swarm!(NetEscape);
