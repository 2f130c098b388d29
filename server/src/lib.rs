//! Renkei (連携): real-time messaging for home-care medicine and nursing care.
//!
//! `main.rs` is thin: the library exposes [`node::run`], which serves on a listener the
//! caller binds, so tests boot the real server on `127.0.0.1:0`.
pub mod accept;
pub mod account;
pub mod api;
pub mod app;
pub mod archive;
pub mod attachment;
pub mod attempts;
pub mod audit;
pub mod bus;
pub mod config;
pub mod connection;
pub mod demo;
pub mod export;
pub mod facility;
pub mod files;
pub mod group;
pub mod http;
pub mod hub;
pub mod input;
pub mod invitation;
pub mod job;
pub mod login;
pub mod mail;
pub mod membership;
pub mod mention;
pub mod metrics;
pub mod moderation;
pub mod node;
pub mod notice;
pub mod outbox;
pub mod password;
pub mod push;
pub mod reading;
pub mod seal;
pub mod search;
pub mod secret;
pub mod sequencer;
pub mod session;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod trail;
pub mod two_factor;
pub mod web;
pub mod wire;

pub use node::{run, run_with};
