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
