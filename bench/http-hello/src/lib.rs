//! The answer `wasmtime serve` gives in figure (h): a `wasi:http`
//! component that reads the request's body to its end and answers
//! `200 {"status":"success"}`, the least a task over HTTP does. `cargo
//! xtask bench` builds it for `wasm32-wasip2` into
//! `target/bench/http_hello.wasm`.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

/// Most bytes read from the body per call.
const CHUNK: u64 = 64 * 1024;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        if let Ok(body) = request.consume()
            && let Ok(stream) = body.stream()
        {
            while matches!(stream.blocking_read(CHUNK), Ok(bytes) if !bytes.is_empty()) {}
        }
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"application/json".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("a new response's body");
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().expect("the body's stream");
        out.blocking_write_and_flush(br#"{"status":"success"}"#)
            .expect("writing the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}

wasip2::http::proxy::export!(Hello);
