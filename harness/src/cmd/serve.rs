//! `capukv-chaos serve`: browse the runs in a directory over HTTP: an index
//! of runs, each run's report and raw files (history, results, logs).

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use clap::Args;
use harness::exit;
use harness::site;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Args)]
pub struct ServeArgs {
    /// The directory holding run directories.
    #[arg(long, default_value = "reports")]
    pub dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        _ => "text/plain; charset=utf-8",
    }
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file a request path names, if it stays inside `root`.
fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(request_path.split(['?', '#']).next()?)?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(relative);
    let canonical = path.canonicalize().ok()?;
    canonical.starts_with(root.canonicalize().ok()?).then_some(canonical)
}

fn listing(dir: &Path, request_path: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let mut n = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() {
                        n.push('/');
                    }
                    n
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let escape = checker::report::page::escape;
    let items: String = names.iter().map(|n| format!("<li><a href=\"{0}\">{0}</a></li>", escape(n))).collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><ul><li><a href=\"../\">../</a></li>{items}</ul></body></html>",
        escape(request_path)
    )
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

async fn handle(mut stream: TcpStream, root: PathBuf) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"GET or HEAD only\n", false).await;
    }
    if path == "/" || path == "/index.html" {
        let runs = site::scan(&root).unwrap_or_default();
        let body = site::index_html(&format!("CapuKV chaos runs in {}", root.display()), "", &runs);
        return respond(&mut stream, "200 OK", "text/html; charset=utf-8", body.as_bytes(), head_only).await;
    }
    let Some(file) = resolve(&root, path) else {
        return respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", head_only).await;
    };
    if file.is_dir() {
        if !path.ends_with('/') {
            let location = format!("{path}/");
            let header = format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(header.as_bytes()).await?;
            return stream.shutdown().await;
        }
        let index = file.join(checker::report::FILE);
        if index.is_file() {
            let body = tokio::fs::read(&index).await?;
            return respond(&mut stream, "200 OK", "text/html; charset=utf-8", &body, head_only).await;
        }
        return respond(&mut stream, "200 OK", "text/html; charset=utf-8", listing(&file, path).as_bytes(), head_only)
            .await;
    }
    let body = tokio::fs::read(&file).await?;
    respond(&mut stream, "200 OK", content_type(&file), &body, head_only).await
}

pub fn main(args: ServeArgs) -> i32 {
    if !args.dir.is_dir() {
        eprintln!("error: {} is not a directory of runs", args.dir.display());
        return exit::NO_INPUT;
    }
    let runtime = match super::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(args.addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.addr);
                return exit::HARNESS_FAILED;
            }
        };
        let addr = listener.local_addr().map_or(args.addr, |a| a);
        println!("serving {} on http://{addr}/ (Ctrl-C to stop)", args.dir.display());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let root = args.dir.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, root).await {
                            tracing::debug!(error = %e, "request failed");
                        }
                    });
                }
                _ = tokio::signal::ctrl_c() => return exit::VALID,
            }
        }
    })
}
