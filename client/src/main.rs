fn main() {
    std::process::exit(rexec_client::main_entry());
}
