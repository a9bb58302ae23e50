//! `wsc demo`: a feed server in this process, the client subscribed to it, a few seconds of
//! ticks with a ping and a pong, then a clean close. Needs no network beyond loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wsc::Config;

use crate::args::{ClientArgs, DemoArgs, ServeMode};
use crate::exit::CliError;
use crate::serve::{self, Settings};

pub fn run(args: &DemoArgs, interrupted: &Arc<AtomicBool>) -> Result<(), CliError> {
    let settings = Settings {
        mode: ServeMode::Feed,
        rate: 4.0,
        feed_ping: Some(Duration::from_secs(1)),
        config: Config::default(),
        compression: true,
        log: false,
        tls: None,
    };
    let server = serve::start("127.0.0.1:0", settings)?;
    let url = format!("ws://{}/market", server.addr);
    say!(
        "wsc demo: feed server on {url}; streaming for {} s\n",
        args.duration
    );
    let client = ClientArgs {
        url: Some(url),
        send: vec![r#"{"op":"subscribe","symbols":["BTC-USD","ETH-USD"]}"#.into()],
        no_stdin: true,
        verbose: true,
        ping_interval: Some(1.5),
        connect_timeout: 5.0,
        ..ClientArgs::default()
    };
    // Stop after the duration exactly as Ctrl-C would: close 1000, wait for the server's close.
    let flag = interrupted.clone();
    let duration = Duration::from_secs_f64(args.duration);
    thread::spawn(move || {
        thread::sleep(duration);
        flag.store(true, Ordering::Relaxed);
    });
    crate::client::run(&client, Some(interrupted))?;
    say!("\nwsc demo: closed cleanly");
    Ok(())
}
