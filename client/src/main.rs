fn main() {
    std::process::exit(rexec_client::app::main_entry());
}
