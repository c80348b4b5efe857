def datasets(store):
    """Every dataset and snapshot below the store's images section."""
    return sorted(store.zfs.get_tree(store.dataset("images"), ("type",), depth=None, types="all"))
