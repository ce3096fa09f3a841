"""Every default of every component, each documented.

Environments (group_data/prod.py, staging.py, sandbox.py) override only what differs.
Keys are namespaced by component; ``orchestra-infra check ENV`` validates the result
against orchestra_infra/schema.py before any host is touched. Secrets never live here:
templates read them by name from the environment's secrets file.
"""

from orchestra_infra.ssh import nodelay_transport

# --- base --------------------------------------------------------------------------------------

# Name of the environment; each group_data/<env>.py sets its own.
environment = "prod"
# System time zone (a name from the tz database).
timezone = "UTC"
# System locale, generated and set as the default LANG.
locale = "en_US.UTF-8"
# Seconds an `apt-get update` stays fresh; a converged run then performs none.
apt_cache_time = 86400
# Seconds to wait for apt and dpkg when another process holds their locks (a fresh Lambda
# instance runs unattended-upgrades for minutes after its first boot). The deploy never
# kills the holder: past this it stops, naming it.
apt_lock_timeout = 900
# Packages every host gets. Keep this short: each component installs its own.
base_packages = [
    "acl",
    "apt-transport-https",
    "ca-certificates",
    "curl",
    "gnupg",
    "locales",
    "logrotate",
    "nftables",
    "procps",
    "rsync",
    "tzdata",
    "unattended-upgrades",
]
# Install security updates automatically (unattended-upgrades, security origins only).
unattended_upgrades = True
# Let unattended-upgrades reboot the host when an update needs it. Off: a GPU server's
# jobs should not vanish at 2 am; the operator reboots in a maintenance window.
unattended_upgrades_reboot = False
# System user that owns and runs the Orchestra services (no login shell, no password).
service_user = "orchestra"
# Application releases, virtualenvs and built assets.
install_root = "/opt/orchestra"
# Configuration and per-app env files (mode 0750, root:orchestra).
config_root = "/etc/orchestra"
# Application logs (Supervisor, PM2), rotated by logrotate.
log_root = "/var/log/orchestra"
# Facts the deploy records on the host (GPU inventory, moved ports, masked copies of
# secret files, SQL on its way to psql).
state_root = "/var/lib/orchestra-infra"
# journald keeps its journal on disk (it survives reboots), capped in total size...
journald_max_use = "1G"
# ...per file...
journald_max_file_size = "128M"
# ...and in age.
journald_max_retention = "1month"
# PEM files on the control machine to add to every host's trust store (a corporate
# TLS-inspecting proxy, a private CA). pip, npm and uv on the host use that store.
extra_ca_certificates = []
# Stop the deploy when no NVIDIA GPU is found (nvidia-smi). Off: the absence is noted.
require_gpu = False

# --- security ----------------------------------------------------------------------------------

# Port sshd listens on. The firewall always allows it, whatever else is configured.
sshd_port = 22
# Only these users may log in over SSH (empty: any user with a key). The user pyinfra
# connects as must be listed, or the deploy refuses to lock the operator out.
sshd_allow_users = ["ubuntu"]
# Authentication attempts per connection.
sshd_max_auth_tries = 3
# Crypto as in dev-sec's ssh-hardening baseline for OpenSSH >= 8.5 (Ubuntu 22.04, Debian 12);
# every list keeps algorithms paramiko (pyinfra's SSH client) speaks. Ciphers:
sshd_ciphers = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
# Key exchange algorithms:
sshd_kex_algorithms = [
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
]
# Message authentication codes:
sshd_macs = [
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-512",
    "hmac-sha2-256",
]
# Inbound firewall (nftables, its own table so Docker's rules survive): deny by default,
# allow sshd_port, nginx_http_port, nginx_https_port and these extra TCP ports.
firewall_enabled = True
firewall_allow_tcp_ports = []
# Networks allowed to reach every port (the private peers of a multi-host layout).
# Example: ["10.0.0.0/24"]
firewall_trusted_networks = []
# Kernel settings (/etc/sysctl.d/60-orchestra.conf). Conservative: nothing here breaks
# Postgres, Redis or nginx. In containers only the net.* keys can be applied.
sysctl_settings = {
    "net.ipv4.conf.all.accept_redirects": 0,
    "net.ipv4.conf.default.accept_redirects": 0,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.all.accept_source_route": 0,
    "net.ipv4.conf.all.log_martians": 1,
    "net.ipv4.conf.all.rp_filter": 1,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv6.conf.all.accept_redirects": 0,
    "net.ipv6.conf.default.accept_redirects": 0,
    "net.core.somaxconn": 4096,
    "kernel.kptr_restrict": 2,
    "kernel.dmesg_restrict": 1,
    "kernel.yama.ptrace_scope": 1,
    "fs.protected_hardlinks": 1,
    "fs.protected_symlinks": 1,
    "vm.swappiness": 10,
    # Hardening (Lynis KRNL-6000). Not kernel.modules_disabled: the NVIDIA driver loads
    # modules; not net.ipv4.conf.all.forwarding=0: Docker routes for its containers.
    "net.ipv4.conf.default.accept_source_route": 0,
    "net.ipv4.conf.default.log_martians": 1,
    "net.ipv4.icmp_ignore_bogus_error_responses": 1,
    "net.ipv6.conf.all.accept_source_route": 0,
    "net.ipv6.conf.default.accept_source_route": 0,
    "net.core.bpf_jit_harden": 2,
    "dev.tty.ldisc_autoload": 0,
    "fs.protected_fifos": 2,
    "fs.protected_regular": 2,
    "fs.suid_dumpable": 0,
    "kernel.core_uses_pid": 1,
    "kernel.sysrq": 0,
    "kernel.unprivileged_bpf_disabled": 1,
    "kernel.perf_event_paranoid": 3,
}

# --- hardening (Lynis) -------------------------------------------------------------------------

# What every console and SSH login shows first (/etc/issue, /etc/issue.net, sshd's Banner),
# a line each (no value holds a newline).
login_banner = [
    "Authorised access only. This system is monitored and every session is logged;",
    "unauthorised use is prohibited and may be prosecuted.",
]
# sshd sessions per connection: OpenSSH's default. Lynis wants 2, but pyinfra keeps more
# channels open than that (an SFTP session beside its commands): at 2 a deploy fails with
# "Secsh channel open FAILED: Connect failed" (measured on a sandbox host).
sshd_max_sessions = 10
# Kernel modules never loaded ("install NAME /bin/true", the form Lynis recognises, and a
# blacklist in modprobe.d):
# uncommon network protocols, USB and FireWire storage. A GPU server needs none of them.
disabled_kernel_modules = ["dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"]
# Core dumps: off for every process (limits.d, systemd-coredump, fs.suid_dumpable=0).
core_dumps = False
# login.defs: the umask of login sessions (sudo keeps 022 for the deploy's own commands),
# password aging for new accounts (logins are by key) and SHA-512 hashing rounds.
login_umask = "027"
password_max_days = 365
password_min_days = 1
password_warn_days = 14
password_hash_rounds = 65536
# auditd with a small rule set (identity, sudoers, sshd, modules, time). Skipped, with
# the reason logged, in a container: the kernel's audit system belongs to the container's host.
auditd_enabled = True
# Process accounting (acct: lastcomm, sa).
process_accounting = True
# fail2ban's sshd jail: an address with this many failed logins in 10 minutes is dropped
# for fail2ban_ban_seconds. Never banned: loopback, firewall_trusted_networks and these.
fail2ban_enabled = True
fail2ban_max_retry = 5
fail2ban_ban_seconds = 3600
fail2ban_ignore_networks = []
# Audit and integrity tools: debsums (checks installed files against their packages),
# apt-show-versions (Lynis' patch check), sysstat (sar), libpam-pwquality (password strength),
# needrestart (which daemons still run replaced libraries after an upgrade; Ubuntu's cloud
# images ship it, Debian's do not; the deploy's own apt runs suspend it), libpam-tmpdir (each
# login session gets its own private TMPDIR, /tmp/user/UID, 0700).
hardening_packages = ["apt-show-versions", "debsums", "libpam-pwquality", "libpam-tmpdir",
                      "needrestart", "sysstat"]

# --- postgres ----------------------------------------------------------------------------------

# Major version. None: the distro's own (Ubuntu 22.04: 14, Debian 12: 15). Pinning another one
# needs the PostgreSQL apt repository below.
postgres_version = None
# PostgreSQL apt repository (deb URL) and the URL of its signing key, for a pinned version.
# The key lands in /etc/apt/keyrings and the source names it with signed-by.
postgres_apt_repository = None
postgres_apt_key_url = None
# Addresses PostgreSQL listens on: loopback; add the private interface's address when the
# app hosts are separate (and list their network in postgres_allowed_networks).
postgres_listen_addresses = ["127.0.0.1", "::1"]
# Networks allowed to connect (scram-sha-256), besides loopback.
postgres_allowed_networks = []
postgres_max_connections = 100
# Memory settings; None computes them from the host's memory (shared_buffers 25 %,
# effective_cache_size 75 %, maintenance_work_mem 1/16 up to 2G, work_mem from the rest).
postgres_shared_buffers = None
postgres_effective_cache_size = None
postgres_work_mem = None
postgres_maintenance_work_mem = None
# Install pgvector when the distro packages it (Debian 12 does not; the PostgreSQL apt
# repository does).
postgres_pgvector = True
# Login roles; each password comes from the named secret. Example item:
# {"name": "orchestra", "password_secret": "postgres_app_password", "connect": ["orchestra"]}
postgres_roles = [
    {"name": "orchestra", "password_secret": "postgres_app_password", "connect": ["orchestra"]},
]
# Databases, their owners (roles above) and extensions to create in them. Nobody else may
# connect to them. Example item: {"name": "orchestra", "owner": "orchestra",
# "extensions": ["vector"]}  (vector needs pgvector from an apt source)
postgres_databases = [{"name": "orchestra", "owner": "orchestra"}]

# --- redis -------------------------------------------------------------------------------------

# Addresses Redis binds (protected mode stays on).
redis_bind = ["127.0.0.1", "-::1"]
# Memory cap and what to evict when it is reached.
redis_maxmemory = "512M"
redis_maxmemory_policy = "allkeys-lru"
# ACL user the app connects as (password: secret redis_app_password); it may not run
# dangerous commands (FLUSHALL, CONFIG, KEYS, ...). The default user is disabled; `admin`
# (secret redis_admin_password) can do everything.
redis_app_user = "orchestra"

# --- weaviate ----------------------------------------------------------------------------------

# The release to run, where to get it and its checksum (from the release's .sha256 asset).
weaviate_version = "1.38.2"
weaviate_url = (
    "https://github.com/weaviate/weaviate/releases/download/"
    "v{version}/weaviate-v{version}-linux-amd64.tar.gz"
)
# REQUIRED before the first real deploy: the sha256 of that tarball, from the release page.
weaviate_sha256 = None
# "download": each host fetches weaviate_url and checks it. "upload": the control machine
# sends weaviate_local_tarball (air-gapped hosts, the sandbox); the same checksum applies.
weaviate_source = "download"
weaviate_local_tarball = None
# Objects and indexes; backups written by the backup-filesystem module.
weaviate_data_dir = "/var/lib/weaviate"
weaviate_backup_dir = "/var/backups/weaviate"
# systemd limits for the weaviate unit.
weaviate_memory_max = "8G"
weaviate_limit_nofile = 65536
# Installed versions kept under /opt/weaviate for a rollback (the running one included).
weaviate_keep_versions = 2

# --- nginx -------------------------------------------------------------------------------------

# The site's DNS name ("_": any name, e.g. an instance reached by its address).
nginx_server_name = "_"
# TLS: "letsencrypt" (certbot, needs nginx_server_name and an email), "selfsigned" (a
# certificate made on the host), or "none" (plain HTTP only: behind another TLS proxy).
nginx_tls = "selfsigned"
nginx_letsencrypt_email = None
# Requests per second (or minute) each client may send to /api/, and the burst allowed.
nginx_api_rate = "20r/s"
nginx_api_burst = 40
# Seconds nginx waits for an API instance's answer: for POST and the other non-idempotent
# methods (never retried), and for GET and HEAD, which then go to the next instance. A hung
# instance (it accepts connections and never answers) costs a GET that many seconds, not a
# failure. Raise the second for an API whose GETs take longer (long polls, big exports).
nginx_api_read_timeout = 60
nginx_api_idempotent_read_timeout = 5
# Largest request body (uploads).
nginx_client_max_body_size = "10m"
# stub_status for the metrics exporter, on loopback.
nginx_stub_status_port = 8088

# --- edge authentication and MCP limits (nginx) ------------------------------------------------

# What a request through nginx must pass, per group of routes: every check listed, [] for
# none (public).
#   "basic":     HTTP basic auth as edge_auth_user with the secret edge_password; the host
#                keeps only its bcrypt hash (/etc/nginx/orchestra.htpasswd). Answers 401.
#   "mtls":      a client certificate signed by the CA in edge_client_ca. Answers 403.
#   "allowlist": a client address in edge_allow_networks. Answers 403.
# Groups: "admin" (/, the React admin), "mcp" (every /mcp/<name>/), "api" (/api/ except
# edge_public_api_paths). No operations page goes through the edge: Monit, Prometheus and
# Alertmanager listen on loopback only (reach them with `ssh -L`). With nginx_tls "none"
# the password crosses the network in clear unless a TLS proxy in front of nginx hides it.
edge_auth = {"admin": ["basic"], "mcp": ["basic"], "api": []}
# The basic-auth user name (one user for every group; the password is the secret).
edge_auth_user = "orchestra"
# bcrypt's cost. nginx checks the hash on every request, in the worker serving it: 5 costs
# about 2 ms; each step doubles it. The generated secret (256 bits) needs no slow hash.
edge_auth_bcrypt_cost = 5
# API paths (prefixes ending in /) public whatever edge_auth["api"] says: health probes
# (Prometheus's blackbox probe, `orchestra-infra status`, load balancers) read them.
edge_public_api_paths = ["/api/health/"]
# For "mtls": the PEM file, on the control machine, of the CA that signs client
# certificates (uploaded to <config_root>/tls/edge-client-ca.pem).
edge_client_ca = None
# For "allowlist": addresses or networks ("203.0.113.7", "10.0.0.0/8", "2001:db8::/32").
edge_allow_networks = []
# /mcp/: requests per second (or minute) each client address may send, the burst allowed
# on top (served at once, not delayed: agents call tools in bursts), and the connections
# (HTTP/2: streams) one address may hold open, long-lived streams included. Above them
# nginx answers 429.
nginx_mcp_rate = "30r/s"
nginx_mcp_burst = 60
nginx_mcp_connections = 32

# --- app (the Orchestra application: API, MCP servers, admin) ----------------------------------

# The application's source: a local checkout (relative to this repository, or absolute) or
# a git URL (git@host:org/repo.git, ssh://, https://, file://). Git sources are fetched on
# the control machine with the optional deploy key (secret app_deploy_key); hosts never
# hold it. Each deploy packs the code into a content-addressed release under
# /opt/orchestra/releases, so the same commit is the same release.
app_source = "app"
# Branch, tag or commit to deploy from a git app_source (None for a local checkout).
app_source_ref = None
# The git host's public keys (`ssh-keyscan HOST` lines), required for an SSH git URL:
# the deploy key is only ever offered to a host whose key is pinned here.
app_source_known_hosts = []
# Releases kept on the host (the live one included) for `orchestra-infra rollback`.
app_releases_keep = 5
# Port a new release's API answers on while it is health-checked, before it goes live.
app_preflight_port = 8090
# Seconds a new release (or a restarted instance) has to report healthy.
app_health_timeout = 60

# --- supervisor (the API instances and MCP servers) ---------------------------------------------

# Seconds a program must stay up to count as started; starts tried before FATAL
# (Monit alerts on FATAL); seconds to finish in-flight requests on stop.
supervisor_startsecs = 3
supervisor_startretries = 10
supervisor_stopwaitsecs = 30

# --- node and pm2 (the React admin) -------------------------------------------------------------

# Where Node.js comes from: "nodesource" (NodeSource's signed apt repository, major
# node_major; the default, because Ubuntu 22.04 ships Node.js 12 and Debian 12 ships 18, both
# end of life) or "distro" (the distribution's own; refused before any change where it is
# older than 18, as on Ubuntu 22.04).
node_source = "nodesource"
node_major = 22
# Another repository with NodeSource's layout (a mirror) and its ASCII-armoured key; None:
# NodeSource's own (https://deb.nodesource.com/node_<node_major>.x and its gpgkey).
node_apt_repository = None
node_apt_key_url = None
# pm2 and pm2-logrotate, installed with npm at exactly these versions.
pm2_version = "6.0.8"
pm2_logrotate_version = "3.0.0"
# Admin processes (more than one runs pm2's cluster mode) and their memory ceiling.
admin_instances = 1
admin_max_memory_restart = "300M"

# --- backup (restic: PostgreSQL, Redis, Weaviate, the config; restore) ---------------------------

# Back up the data hosts daily (orchestra-backup.timer) and check the repository weekly.
# Off: both timers are stopped; scripts and repository stay for `orchestra-infra restore`.
backup_enabled = True
# The restic repository: an absolute path (put it on a Lambda persistent filesystem, e.g.
# /home/ubuntu/<filesystem>/restic: a path on the instance's own disk dies with it),
# "sftp:user@host:/path" (key: secret restic_sftp_private_key; host key:
# backup_sftp_known_hosts) or "s3:https://endpoint/bucket/prefix" (secrets
# restic_s3_access_key_id, restic_s3_secret_access_key). Its password is the secret
# restic_password: without it no backup can be read. Created on the first deploy.
restic_repository = "/var/backups/orchestra/restic"
# Format of a repository this deploy creates: 1 is read by every restic (Ubuntu 22.04 ships
# 0.12); 2 compresses but only restic >= 0.14 (Debian 12) reads it.
restic_repository_version = 1
# The host name snapshots are recorded under (restic --host). None: "orchestra-<environment>",
# the same on a replacement instance, so its restore finds the snapshots of the one it replaces.
backup_host_name = None
# Host key lines of an SFTP repository's server, as `ssh-keyscan -t ed25519 HOST` prints them;
# required with an sftp: repository (an unknown host key is never trusted). Example:
# ["backup.example.com ssh-ed25519 AAAAC3Nz..."]
backup_sftp_known_hosts = []
# When the backup runs (systemd OnCalendar), plus up to this much at random.
backup_on_calendar = "*-*-* 03:15:00"
backup_randomized_delay = "15min"
# Snapshots kept by `restic forget --prune` after each backup.
backup_keep_daily = 7
backup_keep_weekly = 4
backup_keep_monthly = 6
# Besides those: the newest this many snapshots of the host are always kept (at least 3), so
# no retention rule can remove the last good backup.
backup_keep_last = 3
# The mount point of the persistent file system holding a path restic_repository (e.g. the
# Lambda filesystem's /lambda/nfs/<name>): the deploy and every backup refuse to run when it is
# not mounted, instead of writing a new repository on the instance's own disk. None: no check
# (the repository is meant to be on this disk, like the default).
restic_repository_mount = None
# A new host runs no backup timer until a restore succeeded on it (an empty host must not
# back up over the snapshots it should be restored from), or the operator says it starts
# empty: this setting, or `orchestra-infra backup ENV --start-empty` once.
backup_start_empty = False
# When `restic check` runs, and the part of the data it reads each time: "x%" at random or
# "n/t" (part n of t).
backup_check_on_calendar = "Sun *-*-* 05:30:00"
backup_check_read_subset = "5%"
# Dumps are staged in backup/ and snapshots restored to restore/ below this directory (root
# only; room for one uncompressed copy of the databases); emptied after each use.
backup_work_dir = "/var/backups/orchestra/work"
# Seconds to wait for Redis's BGSAVE and for Weaviate's backup or restore to finish.
backup_wait_timeout = 1800
# Between the daily backups, a copy of Redis (its RDB) and of Weaviate (a backup through its
# API) alone, this often (systemd time spans), as restic snapshots tagged orchestra-redis and
# orchestra-weaviate; a restore takes the newest copy of each. Those copies are kept this
# long (restic --keep-within), and always the last 3.
backup_redis_interval = "15min"
backup_weaviate_interval = "1h"
backup_store_keep_within = "2d"

# --- PostgreSQL continuous archiving (pgBackRest: WAL + base backups; point-in-time restore) ----

# Ship every WAL segment to a pgBackRest repository as it fills, and at least every
# pg_archive_timeout seconds while anything is written: losing the instance loses at most that
# much of PostgreSQL (restic's daily pg_dump stays as a second, independent copy). Off:
# archive_mode stays on (changing it restarts PostgreSQL) but nothing is shipped.
pg_archive_enabled = True
# The pgBackRest repository: an absolute path (a Lambda persistent filesystem, like
# restic_repository; a path on the instance's own disk dies with it) or
# "s3:https://endpoint/bucket/prefix" (region pg_archive_s3_region; keys: the secrets
# restic_s3_access_key_id, restic_s3_secret_access_key). No sftp: pgBackRest reads SFTP from
# 2.46; Ubuntu 22.04 ships 2.38 and Debian 12 2.45. Encrypted (aes-256-cbc) with the secret
# pg_archive_cipher_pass: without it nothing in the repository can be read.
pg_archive_repository = "/var/backups/orchestra/pgbackrest"
# Like restic_repository_mount: the deploy, the archive and the backups refuse to write when
# this file system is not mounted. None: no check.
pg_archive_repository_mount = None
pg_archive_s3_region = "us-east-1"
# Seconds after which PostgreSQL switches to a new WAL segment (and so ships it) when
# anything was written: the recovery point objective of an instance loss. At most 60.
pg_archive_timeout = 30
# Base backups (systemd OnCalendar): a full one weekly, a differential one the other days;
# each applies the retention after it. Keep this many full backups (with their WAL: the
# window a point-in-time restore can reach) and this many differential ones.
pg_archive_full_on_calendar = "Sun *-*-* 02:30:00"
pg_archive_diff_on_calendar = "Mon..Sat *-*-* 02:30:00"
pg_archive_keep_full = 2
pg_archive_keep_diff = 6
# When `pgbackrest check` proves the archive works end to end (a WAL switch, pushed, found
# in the repository); its result is in `orchestra-infra status` and the metrics.
pg_archive_check_on_calendar = "hourly"
# The most WAL waiting to be shipped that pg_wal may hold while the repository is unreachable
# or full: beyond it pgBackRest drops WAL (the archive gets a gap until the next full
# backup) instead of filling the instance's disk. PgWalGrowing alerts at half of it.
pg_archive_queue_max = "4G"

# --- monit (health checks that restart what fails, and alerts) ----------------------------------

# Seconds between two rounds of checks (the distro's 120 s takes minutes to act)...
monit_cycle_seconds = 10
# ...and before the first round after Monit starts, while a booting host starts its services.
monit_start_delay = 30
# Seconds a health check (HTTP request, PostgreSQL or Redis handshake) may take.
monit_health_timeout = 5
# Rounds in a row a service must fail its health check, or be missing, before Monit
# restarts it through its manager (supervisorctl, pm2, systemctl).
monit_failed_cycles = 2
# Escalation: after this many restarts within monit_restart_window rounds Monit stops
# restarting the service (it is left unmonitored) and alerts, instead of looping. A
# restarted service gets a grace period before its health counts again (a Supervisor
# program supervisor_startsecs + 10 s, the others 60 s): the window must hold the restarts.
monit_restart_limit = 3
monit_restart_window = 20
# Resource alerts (no restart): rounds in a row a threshold must be crossed...
monit_resource_cycles = 6
# ...space and inodes used on each volume holding /, the logs, the data or the releases...
monit_disk_alert_percent = 85
monit_inode_alert_percent = 85
# ...memory used on the host, and by one service with its children (PostgreSQL excepted: its
# processes share the buffer cache, which each one's RSS counts again)...
monit_memory_alert_percent = 90
monit_service_memory_alert_percent = 40
# ...CPU used by one service with its children (Monit counts it against what its threads
# can use: 100 is a single-threaded process keeping one core busy)...
monit_service_cpu_alert_percent = 90
# ...and the 5-minute load average per CPU core.
monit_load_per_core = 2.0
# More paths whose volumes are checked (e.g. a Lambda persistent filesystem holding backups).
monit_extra_filesystems = []
# Services Monit leaves alone (maintenance): a deploy unmonitors them. Every other check is
# armed again by each deploy, including one Monit gave up on after monit_restart_limit restarts.
monit_paused = []

# Alerts go to a webhook (Slack-compatible JSON; the URL is the optional secret
# alert_webhook_url) and/or by email. Email needs an SMTP relay that accepts mail from this
# host without a login; it is sent to every address in alert_email_to (empty: no email).
alert_smtp_host = None
alert_smtp_port = 25
# Sender address (None: monit@<host name>).
alert_email_from = None
alert_email_to = []

# --- prometheus (metrics, exporters, alert rules, Alertmanager) ----------------------------------
# Every host runs Prometheus and Alertmanager for itself, all on loopback (ports: the port
# table). Alerts go to the webhook in the optional secret alert_webhook_url; without it
# Alertmanager keeps them to itself (null receiver).

# How long and how much (B, KB, MB, GB, TB) Prometheus keeps; the first limit reached wins.
prometheus_retention_time = "15d"
prometheus_retention_size = "2GB"
# How often every target is scraped and every rule evaluated.
prometheus_scrape_interval = "15s"
# Probe nginx's HTTPS port without verifying its certificate. None: only when nginx_tls is
# "selfsigned" (nothing can verify that certificate); a Let's Encrypt one is verified.
prometheus_probe_skip_tls_verify = None
# Alert when a filesystem is fuller than this (percent of its size, for 5 minutes)...
prometheus_alert_disk_percent = 85
# ...when memory in use exceeds this (percent of the host's, for 5 minutes)...
prometheus_alert_memory_percent = 90
# ...when more than this share of nginx's responses are 5xx (over 5 minutes, for 5 minutes)...
prometheus_alert_5xx_ratio = 0.05
# ...and, on data hosts with backup_enabled, when the last successful backup is older than
# this many hours, or none was recorded in as long.
prometheus_backup_max_age_hours = 26

# --- wireguard (the private network of a multi-host layout) -----------------------------------
# With more than one host in the inventory (hosts/ENV: `ADDRESS edge,app`, `ADDRESS app`,
# `ADDRESS data`), the hosts are joined by a WireGuard mesh and every service another host
# needs listens on the host's private address as well as loopback; the firewall allows
# those ports on the WireGuard interface from the peers only. One host: no mesh at all.

# The private addresses: each host's comes from its address in hosts/ENV, hashed into this
# network (adding or removing a host renumbers no other). `check ENV` reports collisions.
mesh_network = "10.210.0.0/16"
# WireGuard's UDP port, open to the environment's peers only.
wireguard_port = 51820
# The interface (wg-quick's configuration /etc/wireguard/<name>.conf).
wireguard_interface = "wg0"
# Use the userspace implementation (wireguard-go) instead of the kernel's WireGuard: for
# kernels without the module (containers such as the sandbox's). Ubuntu 22.04's has it.
# Keys: each host's private key is derived from the secret wireguard_mesh_seed and its
# address on the control machine, and sent only to that host (0600, root).
wireguard_userspace = False

# --- port table: the one place every port is defined ---------------------------------------------
# nginx, Supervisor, PM2, Monit and the firewall all read these. Validation rejects
# duplicates and ports outside 1-65535.

# nginx, public (the firewall opens both).
nginx_http_port = 80
nginx_https_port = 443
# First API instance; instance i listens on api_port + i.
api_port = 8000
# Number of FastAPI instances behind nginx.
api_instances = 2
# React admin, served by Node under PM2.
admin_port = 3000
# Data services, on loopback unless a multi-host layout says otherwise.
postgres_port = 5432
redis_port = 6379
weaviate_port = 8080
weaviate_grpc_port = 50051
# Monit's web interface (loopback only).
monit_port = 2812
# Metrics, loopback only: Prometheus, Alertmanager (its cluster port is off) and the
# exporters (postgres, redis: data hosts; nginx, mtail: the edge).
prometheus_port = 9090
alertmanager_port = 9093
node_exporter_port = 9100
postgres_exporter_port = 9187
redis_exporter_port = 9121
nginx_exporter_port = 9113
blackbox_exporter_port = 9115
# mtail: nginx's responses by status, read from its access log.
mtail_port = 3903
# Multi-host layouts only: each host hands its status rows (and its alerts firing) to the
# admin hosts on this port of its private address (systemd socket, peers only).
status_share_port = 9198
# One entry per MCP server; adding a server is one entry here. `port` is its first
# instance's.
mcp_servers = {
    "memory": {"port": 8003},
    "task": {"port": 8006},
    "agent": {"port": 8007},
    "data": {"port": 8008},
    "monitor": {"port": 8009},
}
# Instances of each MCP server. Two: while a release (or a crash) restarts one, the other
# takes new sessions. A handshake session lives in the memory of the instance that made it;
# its id begins with that instance's route, and nginx sends its requests there alone.
mcp_instances = 2
# Instance i of an MCP server listens on its port + i * mcp_instance_port_step (memory: 8003,
# 8013).
mcp_instance_port_step = 10
# When a port of an internal service (an MCP server, the API instances) is held by a process
# this stack does not run: stop the deploy (False), or move the service to the first free
# port of ports_reassign_range (True). A moved port is recorded on the host
# (/var/lib/orchestra-infra/ports.json) so later runs keep it; every config follows it.
ports_auto_reassign = False
ports_reassign_range = (8100, 8199)

# --- connection (read by pyinfra itself) -------------------------------------------------------


# Lambda Labs instances log in as `ubuntu`, which has passwordless sudo.
ssh_user = "ubuntu"
# Every operation runs through sudo.
_sudo = True
# Send each command's packets at once (TCP_NODELAY): 5x fewer seconds per remote command.
ssh_paramiko_connect_kwargs = {"transport_factory": nodelay_transport}

# What pyinfra reads from this file: every name but the imported one. Without `__all__`
# pyinfra finds the imported names by parsing this file again for each of its 200 names,
# 0.2-0.5 s of every run (docs/benchmarks.md, "The four-host no-op run").
__all__ = [name for name in list(globals()) if not name.startswith("__")
           and name != "nodelay_transport"]
