//! The latency summary both benchmarks report (`pecd bench` and
//! `pecd bench --webmail`).

/// p50 / p99 / max of a sample, in milliseconds.
#[derive(Debug, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Sample size.
    pub n: usize,
}

impl Percentiles {
    pub(crate) fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: usize| v[((v.len() * q) / 100).min(v.len() - 1)];
        Percentiles {
            p50: at(50),
            p99: at(99),
            max: v[v.len() - 1],
            n: v.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.max, p.n), (51.0, 100.0, 100.0, 100));
        assert_eq!(Percentiles::of(vec![]).n, 0);
    }
}
