//! Swarmdrop availability server.

fn main() {
    eprintln!("swarmdrop-server: not built yet");
    std::process::exit(1);
}
