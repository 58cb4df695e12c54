//! The demo web server: `GET /healthz` answers `ok`, `GET /` a page with `$GREETING`, and
//! every response names the environment (`$ENVIRONMENT`). Listens on `0.0.0.0:$PORT`
//! (default 8080). Exits at once on SIGTERM (it runs as PID 1 without a shell or init).
//!
//! Standard library only, plus `libc` for the signal handler.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn main() {
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-web: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("demo-web: listening on 0.0.0.0:{port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let environment = std::env::var("ENVIRONMENT").unwrap_or_else(|_| "unknown".to_string());
    let (status, content_type, body) = match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/" => {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
            (
                "200 OK",
                "text/html; charset=utf-8",
                format!("<!doctype html><title>demo</title><h1>{}</h1><p>environment: {}</p>\n", escape(&greeting), escape(&environment)),
            )
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-environment: {environment}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
