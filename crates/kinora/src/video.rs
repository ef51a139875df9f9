//! `kinora video ...`: the unified API from the command line, through `kinora-client`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kinora_client::{Client, VideoTask};
use serde_json::{json, Map, Value};

use crate::{CreateArgs, VideoCommand};

const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Runs a video command; the error is the message to print.
pub async fn run(url: &str, key: Option<&str>, command: VideoCommand) -> Result<(), String> {
    let key = key.ok_or("an API key is needed: pass --api-key or set KINORA_API_KEY")?;
    let client = Client::new(url, key).map_err(|e| e.to_string())?;
    match command {
        VideoCommand::Create(args) => create(&client, *args).await,
        VideoCommand::Get { id } => {
            let task = client.get_video(&id).await.map_err(|e| e.to_string())?;
            print_json(&task)
        }
        VideoCommand::List {
            page,
            page_size,
            json,
        } => {
            let tasks = client
                .list_videos(page, page_size)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let text = serde_json::to_string_pretty(&tasks).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print!("{}", task_table(&tasks));
            }
            Ok(())
        }
        VideoCommand::Wait { id, timeout } => {
            let task = wait(&client, &id, timeout).await?;
            print_json(&task)
        }
        VideoCommand::Download { id, output } => {
            let task = client.get_video(&id).await.map_err(|e| e.to_string())?;
            let path = download(&client, &task, output).await?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

/// One line per task under a header, columns padded to their widest cell.
fn task_table(tasks: &[VideoTask]) -> String {
    let header = ["ID", "STATUS", "MODEL", "CREATED", "EXTERNAL ID"].map(str::to_owned);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(tasks.iter().map(|t| {
            [
                t.id.clone(),
                serde_json::to_value(t.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                t.model.clone(),
                t.created_at.clone(),
                t.external_task_id.clone().unwrap_or_default(),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn print_json(task: &VideoTask) -> Result<(), String> {
    let text = serde_json::to_string_pretty(task).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// The request body: the --json file, then each flag given on top.
fn body(args: &CreateArgs) -> Result<Value, String> {
    let mut body = match &args.json {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(format!("{} must hold a JSON object", path.display())),
                Err(e) => return Err(format!("{} is not JSON: {e}", path.display())),
            }
        }
        None => Map::new(),
    };
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            body.insert(key.to_owned(), v);
        }
    };
    set("model", args.model.clone().map(Value::from));
    set("prompt", args.prompt.clone().map(Value::from));
    set(
        "negative_prompt",
        args.negative_prompt.clone().map(Value::from),
    );
    set("mode", args.mode.clone().map(Value::from));
    set("aspect_ratio", args.aspect_ratio.clone().map(Value::from));
    set("seconds", args.seconds.map(|s| json!(s)));
    set("sound", args.sound.clone().map(Value::from));
    set("image", args.image.as_deref().map(image_value).transpose()?);
    set(
        "external_task_id",
        args.external_task_id.clone().map(Value::from),
    );
    set("callback_url", args.callback_url.clone().map(Value::from));
    body.entry("model")
        .or_insert_with(|| Value::from("Kling-V2.6"));
    Ok(Value::Object(body))
}

/// A URL as is; a local file as Base64.
fn image_value(given: &str) -> Result<Value, String> {
    let lower = given.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Value::from(given));
    }
    let bytes = std::fs::read(given).map_err(|e| format!("cannot read image {given}: {e}"))?;
    Ok(Value::from(STANDARD.encode(bytes)))
}

async fn create(client: &Client, args: CreateArgs) -> Result<(), String> {
    let body = body(&args)?;
    let task = client
        .create_video_json(&body)
        .await
        .map_err(|e| e.to_string())?;
    if !args.wait {
        return print_json(&task);
    }
    eprintln!("created {}", task.id);
    let done = wait(client, &task.id, args.timeout).await?;
    let path = download(client, &done, args.output).await?;
    println!("{}", path.display());
    Ok(())
}

/// Waits with a progress line on stderr (a moving bar on a terminal, one line per status
/// change otherwise).
async fn wait(client: &Client, id: &str, timeout: u64) -> Result<VideoTask, String> {
    let terminal = std::io::stderr().is_terminal();
    let mut last_status = None;
    let result = client
        .wait(
            id,
            POLL_INTERVAL,
            Duration::from_secs(timeout),
            |task, elapsed| {
                let status = format!("{:?}", task.status).to_lowercase();
                let mut err = std::io::stderr();
                if terminal {
                    let width = 24usize;
                    let at = (elapsed.as_secs() as usize) % width;
                    let bar: String = (0..width)
                        .map(|i| if i == at { '#' } else { '-' })
                        .collect();
                    let _ = write!(err, "\r[{bar}] {status:<10} {:>4}s", elapsed.as_secs());
                    let _ = err.flush();
                } else if last_status.as_deref() != Some(status.as_str()) {
                    let _ = writeln!(err, "{status} after {}s", elapsed.as_secs());
                    last_status = Some(status);
                }
            },
        )
        .await;
    if terminal {
        eprintln!();
    }
    result.map_err(|e| e.to_string())
}

async fn download(
    client: &Client,
    task: &VideoTask,
    output: Option<PathBuf>,
) -> Result<PathBuf, String> {
    let url = task
        .video_url
        .as_deref()
        .ok_or_else(|| format!("task {} has no video (status {:?})", task.id, task.status))?;
    let path = output.unwrap_or_else(|| Path::new(".").join(format!("{}.mp4", task.id)));
    client
        .download(url, &path)
        .await
        .map_err(|e| e.to_string())?;
    Ok(path)
}
