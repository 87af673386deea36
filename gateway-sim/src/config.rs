//! The configuration of the `gateway-sim` binary: a TOML file of `[[hosts]]`, each a
//! [`SimHostConfig`], and [`default_hosts`], the embedded default.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::latency::Latency;
use crate::server::{HeaderName, ProfileName, SimHostConfig};

/// Hosts one configuration may start.
pub const HOSTS_MAX: usize = 64;
/// Longest configuration file read.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// The commented example configuration (`gateway-sim example-config`).
pub const EXAMPLE_TOML: &str = include_str!("../gateway-sim.example.toml");

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// The hosts to start.
    pub hosts: Vec<SimHostConfig>,
}

impl SimConfig {
    /// Parses and validates a TOML configuration.
    pub fn from_toml(text: &str) -> Result<SimConfig, SimError> {
        let config: SimConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML configuration file.
    pub fn load(path: &Path) -> Result<SimConfig, SimError> {
        let error = |source| SimError::ReadConfig {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(error)?.len();
        if size > CONFIG_BYTES_MAX {
            return Err(SimError::Config(format!(
                "{} is {size} bytes, at most {CONFIG_BYTES_MAX}",
                path.display()
            )));
        }
        SimConfig::from_toml(&std::fs::read_to_string(path).map_err(error)?)
    }

    /// The embedded default: [`default_hosts`].
    pub fn default_config() -> SimConfig {
        SimConfig {
            hosts: default_hosts(),
        }
    }

    /// Checks every host, that names are unique and that no two hosts ask for the same port.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.hosts.is_empty() || self.hosts.len() > HOSTS_MAX {
            return Err(SimError::Config(format!(
                "{} hosts, expected 1 to {HOSTS_MAX}",
                self.hosts.len()
            )));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for host in &self.hosts {
            host.validate()?;
            if !names.insert(host.name.as_str()) {
                return Err(SimError::Config(format!(
                    "host name {:?} used twice",
                    host.name
                )));
            }
            if host.listen.port() != 0 && !addrs.insert(host.listen) {
                return Err(SimError::Config(format!(
                    "address {} used twice",
                    host.listen
                )));
            }
        }
        Ok(())
    }
}

/// The four hosts of a PayMesh deployment, on the loopback ports of `router/paymesh.example.toml`
/// (7501 to 7504), with 0 to 1 ms latency, no faults and [`crate::rules::HostRules::default`]:
///
/// | name | profile | length header | port |
/// |---|---|---|---|
/// | `van` | `ascii_1987` | `binary2` | 7501 |
/// | `card` | `binary_bcd` | `bcd2` | 7502 |
/// | `bank` | `ascii_1987` | `ascii4` | 7503 |
/// | `carrier` | `ascii_1987` | `binary2` | 7504 |
///
/// Set `listen` to port 0 for a free port (as tests do).
pub fn default_hosts() -> Vec<SimHostConfig> {
    [
        ("van", ProfileName::Ascii1987, HeaderName::Binary2, 7501),
        ("card", ProfileName::BinaryBcd, HeaderName::Bcd2, 7502),
        ("bank", ProfileName::Ascii1987, HeaderName::Ascii4, 7503),
        ("carrier", ProfileName::Ascii1987, HeaderName::Binary2, 7504),
    ]
    .into_iter()
    .zip(1u64..)
    .map(|((name, profile, header, port), seed)| SimHostConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        latency: Latency::Uniform {
            min_ms: 0,
            max_ms: 1,
        },
        seed,
        ..SimHostConfig::new(name, profile, header)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Faults;
    use crate::rules::LuhnCheck;

    #[test]
    fn example_parses_and_matches_its_comments() {
        let config = SimConfig::from_toml(EXAMPLE_TOML).unwrap();
        let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["van", "card", "bank", "carrier"]);
        let card = &config.hosts[1];
        assert_eq!(
            (card.profile, card.length_header),
            (ProfileName::BinaryBcd, HeaderName::Bcd2)
        );
        assert!(card.rules.accounts.len() >= 2 && card.rules.patterns.len() >= 3);
        assert_eq!(
            card.latency,
            Latency::LongTail {
                median_ms: 20,
                p99_ms: 400
            }
        );
        assert!(card.faults.drop_answer_p > 0.0);
        assert_eq!(config.hosts[3].rules.luhn, LuhnCheck::Never);
    }

    #[test]
    fn defaults() {
        let config = SimConfig::default_config();
        config.validate().unwrap();
        assert_eq!(config.hosts.len(), 4);
        assert!(config.hosts.iter().all(|h| h.faults == Faults::NONE));
        // A TOML round trip keeps everything.
        let text = toml::to_string(&config).unwrap();
        assert_eq!(SimConfig::from_toml(&text).unwrap(), config);
        // Minimal host: everything but the name defaults.
        let minimal = SimConfig::from_toml("[[hosts]]\nname = \"x\"\n").unwrap();
        assert_eq!(
            minimal.hosts[0],
            SimHostConfig::new("x", ProfileName::Ascii1987, HeaderName::Binary2)
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "[[hosts]]\nname = \"x\"\nprofile = \"ebcdic\"\n",
            "[[hosts]]\nname = \"x\"\nlength_header = \"none\"\n",
            "[[hosts]]\nname = \"x\"\ncolour = \"red\"\n",
            "[[hosts]]\nname = \"x\"\n[[hosts]]\nname = \"x\"\n",
            "[[hosts]]\nname = \"x\"\nlisten = \"127.0.0.1:7000\"\n[[hosts]]\nname = \"y\"\nlisten = \"127.0.0.1:7000\"\n",
            "[[hosts]]\nname = \"x\"\nfaults = { drop_answer_p = 1.5 }\n",
            "[[hosts]]\nname = \"x\"\nlatency = { kind = \"uniform\", min_ms = 5, max_ms = 1 }\n",
            "[[hosts]]\nname = \"x\"\n[[hosts.rules.patterns]]\namount_suffix = \"5\"\namount_mod = 10\nresponse_code = \"05\"\n",
            "[[hosts]]\nname = \"x\"\n[[hosts.rules.patterns]]\namount_suffix = \"5\"\nresponse_code = \"5\"\n",
            "[[hosts]]\nname = \"x\"\ntoday_yymm = 2613\n",
        ] {
            assert!(SimConfig::from_toml(bad).is_err(), "{bad}");
        }
    }
}
