use diskq::Queue;

#[test]
fn put_get_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let q: Queue<u64> = diskq::Options::new()
        .chunk_size(3)
        .open(dir.path())
        .unwrap();
    for i in 0..10 {
        q.put(&i).unwrap();
    }
    for i in 0..4 {
        assert_eq!(q.get().unwrap(), i);
        q.task_done().unwrap();
    }
    assert_eq!(q.get().unwrap(), 4);
    drop(q);
    let q: Queue<u64> = diskq::Options::new()
        .chunk_size(3)
        .open(dir.path())
        .unwrap();
    assert_eq!(q.len(), 6);
    for i in 4..10 {
        assert_eq!(q.get().unwrap(), i);
        q.task_done().unwrap();
    }
    assert!(q.is_empty());
    drop(q);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    println!("{names:?}");
}
