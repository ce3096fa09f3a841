"""Benchmarks on sandbox hosts, run through ``orchestra-infra bench``; not part of the shipped
package. Measured figures: docs/benchmarks.md."""
