// Cryptocurrency miners and the pools they report to.

rule mining_stratum_url {
  meta:
    id = "mining-stratum-url"
    category = "crypto_mining"
    severity = "critical"
    description = "stratum mining-pool URL"
  strings:
    $stratum = /stratum[0-9]?\+(tcp|ssl|tls):\/\// nocase
  condition:
    $stratum
}

rule mining_known_miner {
  meta:
    id = "mining-known-miner"
    category = "crypto_mining"
    severity = "high"
    description = "name of a well-known cryptocurrency miner program"
  strings:
    $xmrig = "xmrig" nocase
    $cpuminer = /\bcpuminer(-multi|-opt)?\b/ nocase
    $minerd = "minerd" fullword
    $others = /\b(nbminer|lolminer|phoenixminer|ethminer|t-rex\s+-a|srbminer|gminer|teamredminer)\b/ nocase
  condition:
    any of them
}

rule mining_donate_level {
  meta:
    id = "mining-donate-level"
    category = "crypto_mining"
    severity = "high"
    description = "miner option or config key (--donate-level, donate-level, --cpu-max-threads-hint)"
  strings:
    $flag = /(--|["'])donate-level\b/
    $threads = "--cpu-max-threads-hint"
    $randomx = /"randomx"\s*:\s*\{/
  condition:
    any of them
}

rule mining_pool_host {
  meta:
    id = "mining-pool-host"
    category = "crypto_mining"
    severity = "high"
    description = "host name of a well-known cryptocurrency mining pool"
  strings:
    $pools = /\b(pool\.minexmr\.com|minexmr\.com|xmr\.pool\.[a-z0-9.-]{2,40}|[a-z0-9.-]{0,40}nanopool\.org|[a-z0-9.-]{0,40}supportxmr\.com|[a-z0-9.-]{0,40}2miners\.com|[a-z0-9.-]{0,40}f2pool\.com|[a-z0-9.-]{0,40}hashvault\.pro|[a-z0-9.-]{0,40}moneroocean\.stream|[a-z0-9.-]{0,40}herominers\.com|[a-z0-9.-]{0,40}c3pool\.(com|org)|[a-z0-9.-]{0,40}unmineable\.com|[a-z0-9.-]{0,40}nicehash\.com|[a-z0-9.-]{0,40}ethermine\.org|[a-z0-9.-]{0,40}xmrpool\.eu)\b/ nocase
  condition:
    $pools
}
