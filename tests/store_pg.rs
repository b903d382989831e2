//! The store on PostgreSQL: each test starts its own throwaway cluster
//! (`common::pg`), on a Unix socket in a temp folder.

mod common;

use common::pg::PgCluster;

#[test]
fn a_throwaway_cluster_starts_answers_and_goes() {
    let pg = PgCluster::start();
    let dir = pg.socket_dir();
    assert_eq!(pg.psql("pecd", "SELECT current_user"), "pecd");
    assert!(dir.join(format!(".s.PGSQL.{}", pg.port())).exists());
    let other = PgCluster::start();
    assert_ne!(other.socket_dir(), dir);
    drop(pg);
    assert!(!dir.exists(), "the cluster's folder is deleted");
    assert_eq!(other.psql("pecd", "SELECT 1"), "1");
}
