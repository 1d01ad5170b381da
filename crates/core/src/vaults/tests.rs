//! Vaults, clients and tokens: the rules, on the memory engine.
