// Package session is fanscope's application core. A Session joins the
// sources of one run (fanscope's Redis subscription and every delivery
// endpoint, each a Source) to their consumers:
//
//	sources → feed.Queue → fan-in (numbering, probe engine, ring) → consumers
//
// The consumers are the tail printer, the probe report, the TUI and serve's
// metrics; watch and serve read the same Snapshot. Commands flow the other
// way through methods only: Publish, SendProbe, SetProbing, RunProbes.
// Package cli keeps flags, commands and printing.
package session
