//! The training loader: seeded per-epoch permutations, resume from a saved state, and prefetching that never
//! changes which images are delivered.

use hessian_gan::data::{loader::epoch_permutation, Dataset, DatasetWriter, Loader, LoaderState};
use hessian_gan::io::fs;
use std::path::PathBuf;
use std::sync::Arc;
use tch::Tensor;

const N: usize = 37;

/// A dataset whose image i is the constant i at every level (so batches reveal their indices), 8×8, 1 channel.
fn dataset(name: &str) -> (PathBuf, Arc<Dataset>) {
    let dir = std::env::temp_dir().join(format!("hg-dsload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fs::build_dir_atomic(&dir, |t| {
        let mut w = DatasetWriter::create(t, "ids", 8, 1, vec![])?;
        for i in 0..N {
            w.push(&[i as u8; 64], None)?;
        }
        w.finish("test", "test")?;
        Ok(())
    })
    .unwrap();
    let ds = Arc::new(Dataset::open(&dir).unwrap());
    (dir, ds)
}

/// The image indices in a batch tensor [B, 1, s, s].
fn ids(t: &Tensor) -> Vec<u32> {
    let s = t.size();
    assert_eq!(s[1], 1);
    let v: Vec<u8> = Vec::try_from(t.flatten(0, -1)).unwrap();
    let per = (s[2] * s[3]) as usize;
    v.chunks(per)
        .map(|c| {
            assert!(c.iter().all(|&x| x == c[0]));
            c[0] as u32
        })
        .collect()
}

fn stream(loader: &mut Loader, level: u32, batch: usize, batches: usize) -> Vec<u32> {
    (0..batches)
        .flat_map(|_| {
            let t = loader.next_batch(level, batch).unwrap();
            assert_eq!(t.size(), vec![batch as i64, 1, 1 << level, 1 << level]);
            assert_eq!(t.kind(), tch::Kind::Uint8);
            ids(&t)
        })
        .collect()
}

#[test]
fn each_epoch_is_a_seeded_permutation() {
    let (dir, ds) = dataset("perm");
    let mut l = Loader::new(ds.clone(), 9);
    // 3 epochs in batches of 5 that straddle the epoch boundaries (37 is prime).
    let s = stream(&mut l, 3, 5, 3 * N / 5 + 1);
    for e in 0..3 {
        let epoch = &s[e * N..(e + 1) * N];
        let mut sorted = epoch.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..N as u32).collect::<Vec<_>>(), "epoch {e}");
        assert_eq!(epoch, &epoch_permutation(9, 3, e as u64, N)[..]);
    }
    assert_ne!(&s[..N], &s[N..2 * N], "epochs are shuffled independently");
    // Deterministic for a seed, different for another.
    let again = stream(&mut Loader::new(ds.clone(), 9), 3, 5, 10);
    assert_eq!(&again[..], &s[..50]);
    let other = stream(&mut Loader::new(ds.clone(), 10), 3, 5, 10);
    assert_ne!(&other[..], &s[..50]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prefetch_does_not_change_the_batches() {
    let (dir, ds) = dataset("prefetch");
    // A schedule that switches level and batch size (as the trainer does at lod and batch changes).
    let plan: Vec<(u32, usize)> = [(2u32, 4usize); 6]
        .into_iter()
        .chain([(3, 4); 3])
        .chain([(3, 7); 5])
        .chain([(2, 4); 2])
        .chain([(3, 7); 4])
        .collect();
    let run = |depth: usize| -> Vec<Vec<u32>> {
        let mut l = Loader::new(ds.clone(), 1);
        l.set_prefetch(depth);
        plan.iter()
            .map(|&(lv, b)| ids(&l.next_batch(lv, b).unwrap()))
            .collect()
    };
    let sync = run(0);
    assert_eq!(run(2), sync);
    assert_eq!(run(5), sync);
    // Levels have their own streams: level 2 resumes where it left off after the level-3 batches.
    let l2: Vec<u32> = sync[..6]
        .iter()
        .chain(&sync[14..16])
        .flatten()
        .copied()
        .collect();
    let mut fresh = Loader::new(ds.clone(), 1);
    assert_eq!(stream(&mut fresh, 2, 4, 8), l2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_from_state_continues_the_same_sequence() {
    let (dir, ds) = dataset("resume");
    let mut a = Loader::new(ds.clone(), 4);
    let _ = stream(&mut a, 2, 6, 5);
    let _ = stream(&mut a, 3, 6, 2);
    let state = a.state();
    assert_eq!(state.positions[&2], 30);
    assert_eq!(state.positions[&3], 12);
    // Through JSON, as a checkpoint stores it.
    let json = serde_json::to_string(&state).unwrap();
    let restored: LoaderState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, state);
    let mut b = Loader::with_state(ds.clone(), 4, restored).unwrap();
    assert_eq!(stream(&mut b, 2, 6, 9), stream(&mut a, 2, 6, 9));
    assert_eq!(stream(&mut b, 3, 6, 3), stream(&mut a, 3, 6, 3));
    // A state from another dataset is refused.
    let mut wrong = state.clone();
    wrong.count = 99;
    let e = Loader::with_state(ds.clone(), 4, wrong)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("99 images"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_requests_are_errors() {
    let (dir, ds) = dataset("bad");
    let mut l = Loader::new(ds.clone(), 1);
    assert!(l
        .next_batch(4, 2)
        .unwrap_err()
        .to_string()
        .contains("not there"));
    assert!(l.next_batch(3, 0).is_err());
    // Batches larger than the dataset wrap into the next epoch.
    let big = ids(&l.next_batch(2, 2 * N + 3).unwrap());
    assert_eq!(big.len(), 2 * N + 3);
    let r = hessian_gan::data::loader::bench(ds, 1, 8, 4, 10, 2).unwrap();
    assert!(r.images_per_s > 0.0 && r.batches == 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Data parallelism (issue 21): the parts of every batch, each read by its own loader (as each rank does), tile
/// the batch a whole loader delivers, with and without prefetching; the positions stay those of the whole stream.
#[test]
fn parts_of_a_batch_tile_the_whole_batch() {
    use hessian_gan::data::Part;
    let (dir, ds) = dataset("parts");
    let plan: Vec<(u32, usize)> = [(2u32, 6usize); 7].into_iter().chain([(3, 4); 5]).collect();
    let mut whole = Loader::new(ds.clone(), 3);
    let expect: Vec<Vec<u32>> = plan
        .iter()
        .map(|&(lv, b)| ids(&whole.next_batch(lv, b).unwrap()))
        .collect();
    for depth in [0, 2] {
        let mut parts: Vec<Loader> = (0..2)
            .map(|index| {
                let mut l = Loader::new(ds.clone(), 3);
                l.set_prefetch(depth);
                l.set_part(Part { index, parts: 2 }).unwrap();
                l
            })
            .collect();
        for (&(lv, b), want) in plan.iter().zip(&expect) {
            let got: Vec<u32> = parts
                .iter_mut()
                .flat_map(|l| ids(&l.next_batch(lv, b).unwrap()))
                .collect();
            assert_eq!(&got, want, "depth {depth}");
        }
        assert_eq!(parts[1].state(), whole.state());
    }
    let mut odd = Loader::new(ds.clone(), 3);
    odd.set_part(Part { index: 1, parts: 2 }).unwrap();
    let e = odd.next_batch(2, 5).unwrap_err().to_string();
    assert!(e.contains("5") && e.contains("2 equal parts"), "{e}");
    assert!(odd.set_part(Part { index: 2, parts: 2 }).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
