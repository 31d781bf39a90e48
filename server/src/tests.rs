//! Code that exists for the tests only: the deterministic simulation
//! (sim.rs), which runs rexecd's decision code against a simulated world.

mod sim;
