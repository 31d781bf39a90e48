fn main() {
    std::process::exit(rexec_client::cli::main_entry());
}
