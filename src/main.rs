fn main() {
    std::process::exit(rsdbt::cli::main());
}
