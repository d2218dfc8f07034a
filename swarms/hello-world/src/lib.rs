//! `hello-world`: the smallest useful swarm.
//!
//! - `hello`: `{"name": "Ada"}` → `{"greeting": "Hello, Ada!"}` (name defaults to "world");
//! - `echo`: returns its payload unchanged under `echo`;
//! - `add`: `{"a": 2, "b": 3}` → `{"sum": 5}`; a sum past the range of i64
//!   is a failed task, not a wrapped number (the README's example).

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

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

fn world() -> String {
    "world".to_string()
}

impl Swarm for HelloWorld {
    const TASK_TYPES: &'static [&'static str] = &["hello", "echo", "add"];

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
            "add" => {
                let Add { a, b } = request.payload()?;
                let sum = a
                    .checked_add(b)
                    .ok_or_else(|| TaskError::failed(format!("{a} + {b} overflows i64")))?;
                Ok(json!({ "sum": sum }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(HelloWorld);
