// `capukv` with the planted bugs compiled in (feature `planted-bugs`): the
// same program under another name, so that it never replaces the real
// server in a target directory. See src/planted.rs.
include!("../main.rs");
