pub mod aa_client;
