//! `hello-world`: the smallest useful swarm.
//!
//! - `hello`: `{"name": "Ada"}` → `{"greeting": "Hello, Ada!"}` (name defaults to "world");
//! - `echo`: returns its payload unchanged under `echo`.

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json};
use serde::Deserialize;

/// The swarm.
pub struct HelloWorld;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    #[serde(default = "world")]
    name: String,
}

fn world() -> String {
    "world".to_string()
}

impl Swarm for HelloWorld {
    const TASK_TYPES: &'static [&'static str] = &["hello", "echo"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "hello" => {
                let hello: Hello = request.payload()?;
                info!("greeting {}", hello.name);
                println!("Hello, {}!", hello.name);
                Ok(json!({ "greeting": format!("Hello, {}!", hello.name) }))
            }
            "echo" => {
                let payload: Value = request.payload()?;
                Ok(json!({ "echo": payload, "task_id": request.task_id() }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(HelloWorld);
