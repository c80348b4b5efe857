def datasets(store):
    """Every dataset and snapshot below the store's images section."""
    return sorted(store.zfs.get_tree(store.dataset("images"), ("type",), depth=None, types="all"))


def stop_zygote(store_root):
    """End the zygote a test's pods started for this store (in production it lives on)."""
    import os
    import signal

    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import zygote
    answer = zygote.ping(zygote.socket_path_for(store_root))
    if answer:
        os.kill(answer["pid"], signal.SIGTERM)


def scratch_store(zfs_pool, prefix):
    """Yield a fresh, initialised store on the test pool; stop its zygote and destroy it afterwards.
    A generator for fixtures: `yield from scratch_store(zfs_pool, "s")`."""
    import os
    import uuid

    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
    key = prefix + uuid.uuid4().hex[:8]
    config = StoreConfig(root="%s/%s" % (zfs_pool.name, key), mountpoint=os.path.join(str(zfs_pool.base), key))
    store = Store(config, zfs_pool.zfs)
    store.ensure()
    yield store
    stop_zygote(config.root)
    zfs_pool.zfs.destroy(config.root, recursive=True)
