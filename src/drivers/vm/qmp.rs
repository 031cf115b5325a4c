//! A minimal QMP client (QEMU's JSON machine protocol) over the VM's unix
//! socket: enough to press the power button, send keys (tapped together, or
//! held and released one by one) and quit.

use std::path::Path;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    /// Connects and leaves capabilities negotiation mode.
    pub async fn connect(socket: &Path) -> std::io::Result<Qmp> {
        let stream = UnixStream::connect(socket).await?;
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
        };
        qmp.read_message().await?; // the greeting
        qmp.execute("qmp_capabilities", Value::Null).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QEMU closed its QMP socket",
                ));
            }
            let message: Value = serde_json::from_str(&line)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            // Asynchronous events interleave with replies; skip them.
            if message.get("event").is_none() {
                return Ok(message);
            }
        }
    }

    /// Runs a command; its `return` value, or its error as an I/O error.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> std::io::Result<Value> {
        let mut request = json!({ "execute": command });
        if !arguments.is_null() {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await?;
        let reply = self.read_message().await?;
        match reply.get("error") {
            Some(error) => Err(std::io::Error::other(format!("QMP {command}: {error}"))),
            None => Ok(reply.get("return").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Presses keys together (`["ctrl", "alt", "delete"]`), by QEMU qcode.
    pub async fn send_keys(&mut self, qcodes: &[&str]) -> std::io::Result<()> {
        let keys: Vec<Value> = qcodes
            .iter()
            .map(|k| json!({ "type": "qcode", "data": k }))
            .collect();
        self.execute("send-key", json!({ "keys": keys })).await?;
        Ok(())
    }

    /// Presses (`down`) or releases one key, by QEMU qcode: what a held
    /// modifier (`<leftCtrlOn>` in a boot command) needs.
    pub async fn key_event(&mut self, qcode: &str, down: bool) -> std::io::Result<()> {
        let event = json!({
            "type": "key",
            "data": { "down": down, "key": { "type": "qcode", "data": qcode } }
        });
        self.execute("input-send-event", json!({ "events": [event] }))
            .await?;
        Ok(())
    }
}
