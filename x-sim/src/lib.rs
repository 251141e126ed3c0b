//! The local X platform (`x-sim`): for now the platform's parameter generation tool
//! (`x-sim creds`), a payload crypt tool (`x-sim crypt`) and the runner of HEX parsing scripts;
//! the simulator itself follows.

pub mod cli;
pub mod script;
