//! The local X platform (`x-sim`): for now the platform's parameter generation tool
//! (`x-sim creds`) and a payload crypt tool (`x-sim crypt`); the simulator itself follows.

pub mod cli;
