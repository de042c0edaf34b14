// SPDX-License-Identifier: GPL-2.0
//! Command-line parsing: QEMU-compatible short options, long forms, sizes.

use clap::Parser;
use ivshmem_server::{parse_size, Cli, MemoryBacking};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("ivshmem-server").chain(args.iter().copied()))
}

#[test]
fn sizes_with_suffixes() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4K"), Ok(4096));
    assert_eq!(parse_size("64k"), Ok(64 << 10));
    assert_eq!(parse_size("4M"), Ok(4 << 20));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    assert_eq!(parse_size("1T"), Ok(1 << 40));
    assert_eq!(parse_size("1048576B"), Ok(1 << 20));
}

#[test]
fn bad_sizes_are_rejected_with_a_reason() {
    for bad in ["", "M", "4X", "-4M", "4.5M", " 4M", "0x1000", "4MB"] {
        let err = parse_size(bad).unwrap_err();
        assert!(err.contains("invalid size"), "{bad:?}: {err}");
    }
    assert!(parse_size("0")
        .unwrap_err()
        .contains("smaller than one page"));
    assert!(parse_size("1K")
        .unwrap_err()
        .contains("smaller than one page"));
    assert!(parse_size("3M").unwrap_err().contains("not a power of two"));
    assert!(parse_size("12288")
        .unwrap_err()
        .contains("not a power of two"));
    assert!(parse_size("99999999999999999999")
        .unwrap_err()
        .contains("too large"));
    assert!(parse_size("16777216T").unwrap_err().contains("too large"));
}

#[test]
fn defaults_match_qemu() {
    let cli = parse(&[]).unwrap();
    let config = cli.config();
    assert_eq!(config.socket_path.to_str(), Some("/tmp/ivshmem_socket"));
    assert_eq!(config.memory, MemoryBacking::ShmName("ivshmem".into()));
    assert_eq!(
        (config.size, config.vectors, config.verbose),
        (4 << 20, 1, false)
    );
    assert!(!cli.foreground && cli.pidfile.is_none());
}

#[test]
fn short_and_long_forms() {
    let short = parse(&[
        "-v", "-F", "-p", "/run/p", "-S", "/s", "-m", "/hp", "-l", "2M", "-n", "64",
    ])
    .unwrap();
    let long = parse(&[
        "--verbose",
        "--foreground",
        "--pidfile",
        "/run/p",
        "--socket",
        "/s",
        "--shm-dir",
        "/hp",
        "--size",
        "2M",
        "--vectors",
        "64",
    ])
    .unwrap();
    for cli in [short, long] {
        let config = cli.config();
        assert!(cli.foreground && config.verbose);
        assert_eq!(
            cli.pidfile.as_deref().and_then(|p| p.to_str()),
            Some("/run/p")
        );
        assert_eq!(config.socket_path.to_str(), Some("/s"));
        assert_eq!(config.memory, MemoryBacking::Dir("/hp".into()));
        assert_eq!((config.size, config.vectors), (2 << 20, 64));
    }
    let cli = parse(&["--shm-name", "foo"]).unwrap();
    assert_eq!(cli.config().memory, MemoryBacking::ShmName("foo".into()));
}

#[test]
fn vectors_out_of_range_and_bad_combinations() {
    for bad in [
        &["-n", "0"][..],
        &["-n", "65"],
        &["--vectors=-1"],
        &["-n", "two"],
        &["-l", "3M"],
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{bad:?}: {err}"
        );
    }
    let err = parse(&["-M", "x", "-m", "/dir"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    assert_eq!(
        parse(&["-x"]).unwrap_err().kind(),
        clap::error::ErrorKind::UnknownArgument
    );
    assert_eq!(
        parse(&["-h"]).unwrap_err().kind(),
        clap::error::ErrorKind::DisplayHelp
    );
}

#[test]
fn v2_options_as_the_harness_passes_them() {
    let cli = parse(&[
        "--v2",
        "-F",
        "-S",
        "/tmp/h",
        "-m",
        "/dev/shm",
        "--max-peers",
        "8",
        "-n",
        "2",
        "--rw-size",
        "504K",
        "--output-size",
        "64K",
        "--protocol",
        "0x8002",
        "--vfio-user",
        "/tmp/a",
        "--vfio-user",
        "/tmp/b,protocol=0xc002",
        "--one-shot",
        "--strict",
    ])
    .unwrap();
    let c = cli.v2_config();
    assert_eq!((c.max_peers, c.vectors, c.protocol), (8, 2, 0x8002));
    assert_eq!((c.rw_size, c.output_size), (504 << 10, 64 << 10));
    assert_eq!(
        c.endpoints,
        vec![
            ivshmem_server::v2::EndpointSpec {
                path: "/tmp/a".into(),
                protocol: None
            },
            ivshmem_server::v2::EndpointSpec {
                path: "/tmp/b".into(),
                protocol: Some(0xc002)
            },
        ]
    );
    assert!(parse(&["--v2", "--vfio-user", "/tmp/x,protocol=zz"]).is_err());
    assert!(parse(&["--v2", "--vfio-user", ",protocol=1"]).is_err());
    assert!(c.one_shot && c.strict);
    assert_eq!(c.memory, MemoryBacking::Dir("/dev/shm".into()));
    let p = c.device_params().unwrap();
    assert_eq!(p.layout.total(), 4096 + (504 << 10) + 8 * (64 << 10));
    assert_eq!(p.bar2_size, 1 << 20);
}

#[test]
fn v2_options_are_checked() {
    // v2-only options need --v2; -l does not go with it.
    assert!(parse(&["--max-peers", "4"]).is_err());
    assert!(parse(&["--strict"]).is_err());
    assert!(parse(&["--v2", "-l", "4M"]).is_err());
    assert!(parse(&["--v2", "--max-peers", "1"]).is_err());
    assert!(parse(&["--v2", "--max-peers", "65537"]).is_err());
    assert!(
        parse(&["--v2", "--rw-size", "1000"]).is_err(),
        "not a page multiple"
    );
    assert!(parse(&["--v2", "--protocol", "0x10000"]).is_err());
    assert!(parse(&["--v2", "--protocol", "zz"]).is_err());
    let cli = parse(&["--v2", "--protocol", "49154", "--rw-size", "0"]).unwrap();
    assert_eq!((cli.protocol, cli.rw_size, cli.max_peers), (0xc002, 0, 2));
    // v1 use is unchanged.
    let v1 = parse(&["-l", "16M", "-n", "2"]).unwrap();
    assert!(!v1.v2);
    assert_eq!(v1.config().size, 16 << 20);
}
