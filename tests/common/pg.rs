//! A throwaway PostgreSQL cluster per test (`pecd::labpg`, the one `pecd
//! bench --store postgresql` uses), with fsync off, failing the test with
//! the reason when it cannot be made. Nothing is skipped: without
//! PostgreSQL the test fails and says how to install it.

/// A running throwaway cluster.
pub struct PgCluster(pecd::labpg::PgCluster);

impl PgCluster {
    /// Create and start a cluster with a superuser role and a database,
    /// both named `pecd`.
    pub fn start() -> PgCluster {
        PgCluster(pecd::labpg::PgCluster::start(false).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The folder of the socket (and of the cluster).
    pub fn socket_dir(&self) -> std::path::PathBuf {
        self.0.socket_dir()
    }

    /// The port that names the socket file.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// The URL of database `db` over the socket.
    pub fn url_of(&self, db: &str) -> String {
        self.0.url_of(db)
    }

    /// The URL of the `pecd` database.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Another empty database in the same cluster; its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.0
            .create_database(name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run `sql` with psql in database `db`; its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`PgCluster::psql`], giving the server's complaint when it fails.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.0.psql(db, sql).map_err(|e| match e {
            pecd::labpg::PgLabError::Step(_, why) => why,
            e => e.to_string(),
        })
    }
}
