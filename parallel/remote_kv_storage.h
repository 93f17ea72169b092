// RemoteKvStorage: the storage behind rank 0's plan of another rank's KV pool in data-parallel
// attention (docs/PARALLEL.md section 6). Rank 0's scheduler admits, grows and prefix-caches the
// sequences of every rank with one KvCacheManager per rank; the bytes of rank r's pool live only on
// rank r. This storage has no memory: it checks each copy / fill against the layout (a pool bug
// shows here, not on the follower) and does nothing else (a RecordingKvStorage around it logs the
// operation for rank r). Its region addresses belong to no address space of this process, like a
// device pool's, and must never be dereferenced (host_accessible() is false).
#pragma once
#include <memory>

#include "kvcache/kv_storage.h"

namespace ds4 {

std::unique_ptr<KvStorage> make_remote_storage(const KvPoolLayout& layout);

}  // namespace ds4
