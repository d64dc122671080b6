// torch.distributed's C++ layer (c10d) behind a plain C ABI for src/core/distributed.rs (issue 21): the TCPStore
// rendezvous, a Gloo (CPU) or NCCL (CUDA) process group, and the three collectives data-parallel training needs:
// an in-place all-reduce (sum), a broadcast from one rank and a barrier. No communication code of our own.
//
// The PyPI wheel ships the c10d headers but not Gloo's own (gloo/*.h) nor, for NCCL, a matching nccl.h, and
// ProcessGroupGloo.hpp / ProcessGroupNCCL.hpp include them. So what we call is declared here with the exact
// signatures libtorch_cpu.so / libtorch_cuda.so export (the two constructors, the option factories,
// createDeviceForInterface), and Gloo's two option data members as its header lists them; every other call goes
// through c10d::Backend, whose header we have, by virtual dispatch. The declared classes reserve
// more room than the real objects take (each is a handful of containers and handles), so `make_intrusive` allocates
// enough, the real constructor fills it, and the real virtual destructor frees it.
//
// Conventions as csrc/ops.cpp: tensors are torch-sys's `torch::Tensor*`, borrowed; a C++ exception never crosses the
// ABI: the call returns nonzero (or null) and the message is read with hg_dist_last_error.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace gloo {
namespace transport {
class Device;
}
}  // namespace gloo

namespace c10d {
class ProcessGroupGloo : public Backend {
 public:
  struct Options : public Backend::Options {
    static c10::intrusive_ptr<Options> create_default(std::chrono::milliseconds timeout);
    // The data members exactly as ProcessGroupGloo.hpp declares them (we set `devices`).
    std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
    int threads;
  };
  static std::shared_ptr<::gloo::transport::Device> createDeviceForInterface(const std::string& interface,
                                                                            bool lazyInit);
  ProcessGroupGloo(const c10::intrusive_ptr<Store>& store, int rank, int size, c10::intrusive_ptr<Options> options);

 private:
  char reserved_[16384];
};

#ifdef HG_WITH_NCCL
class ProcessGroupNCCL : public Backend {
 public:
  struct Options : public Backend::Options {
    explicit Options(bool is_high_priority_stream);

   private:
    char reserved_[16384];
  };
  ProcessGroupNCCL(c10::intrusive_ptr<Store> store, int rank, int size, c10::intrusive_ptr<Options> options);

 private:
  char reserved_[65536];
};
#endif
}  // namespace c10d

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

struct StoreBox {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

c10d::TCPStore& store_of(void* box) {
  return *static_cast<StoreBox*>(box)->store;
}

struct Group {
  c10::intrusive_ptr<c10d::Backend> backend;
};

// Collectives run on the backend's own threads (Gloo) or streams (NCCL); `wait` returns once the result is usable
// by later work on this thread's current stream: at once for Gloo on the CPU, without a host sync for NCCL.
void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait();
}
}  // namespace

extern "C" {

const char* hg_dist_last_error() {
  return last_error.c_str();
}

// A TCPStore: the server on rank 0 (`is_server`), a client elsewhere. `timeout_ms` bounds every blocking get and
// the initial connection; the server waits for `world` clients when `wait_workers` is set.
void* hg_dist_store_new(const char* host, int port, int world, int is_server, long timeout_ms, int wait_workers) {
  StoreBox* out = nullptr;
  int rc = guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = world;
    opts.waitWorkers = wait_workers != 0;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    out = new StoreBox{c10::make_intrusive<c10d::TCPStore>(std::string(host), opts)};
  });
  return rc == 0 ? out : nullptr;
}

void hg_dist_store_free(void* store) {
  delete static_cast<StoreBox*>(store);
}

int hg_dist_store_set(void* store, const char* key, const char* value, size_t len) {
  return guarded([&] {
    std::vector<uint8_t> bytes(value, value + len);
    store_of(store).set(std::string(key), bytes);
  });
}

// Blocks until `key` exists (up to the store's timeout). The value is malloc'd; free it with hg_dist_free.
int hg_dist_store_get(void* store, const char* key, char** value, size_t* len) {
  return guarded([&] {
    auto bytes = store_of(store).get(std::string(key));
    char* buf = static_cast<char*>(std::malloc(bytes.size() + 1));
    std::memcpy(buf, bytes.data(), bytes.size());
    buf[bytes.size()] = 0;
    *value = buf;
    *len = bytes.size();
  });
}

// Atomically adds `delta` to the counter `key` and returns the new value in `out`.
int hg_dist_store_add(void* store, const char* key, long delta, long* out) {
  return guarded([&] { *out = store_of(store).add(std::string(key), delta); });
}

void hg_dist_free(char* p) {
  std::free(p);
}

// A process group of `world` ranks over `store`: backend 0 = Gloo (CPU tensors), 1 = NCCL (CUDA tensors).
// `interfaces`: Gloo's network interfaces, comma-separated (torch's GLOO_SOCKET_IFNAME), or empty for the default
// device (the address this host's name resolves to, else loopback).
void* hg_dist_group_new(void* store, int rank, int world, int backend, long timeout_ms, const char* interfaces) {
  Group* out = nullptr;
  int rc = guarded([&] {
    // The group holds its own reference to the store.
    c10::intrusive_ptr<c10d::Store> s = static_cast<StoreBox*>(store)->store;
    auto timeout = std::chrono::milliseconds(timeout_ms);
    if (backend == 0) {
      auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
      std::string names(interfaces);
      if (!names.empty()) {
        opts->devices.clear();
        size_t start = 0;
        while (start <= names.size()) {
          size_t end = names.find(',', start);
          if (end == std::string::npos) end = names.size();
          if (end > start) {
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, end - start),
                                                                                     false));
          }
          start = end + 1;
        }
      }
      out = new Group{c10::make_intrusive<c10d::ProcessGroupGloo>(s, rank, world, opts)};
    } else {
#ifdef HG_WITH_NCCL
      auto opts = c10::make_intrusive<c10d::ProcessGroupNCCL::Options>(false);
      opts->timeout = timeout;
      out = new Group{c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world, opts)};
#else
      throw std::runtime_error("this libtorch has no CUDA: NCCL is unavailable; use the gloo backend");
#endif
    }
  });
  return rc == 0 ? out : nullptr;
}

void hg_dist_group_free(void* group) {
  delete static_cast<Group*>(group);
}

// In-place sum over the ranks.
int hg_dist_all_reduce_sum(void* group, const at::Tensor* t) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    wait(static_cast<Group*>(group)->backend->allreduce(ts, opts));
  });
}

// In place: every rank receives `root`'s values.
int hg_dist_broadcast(void* group, const at::Tensor* t, int root) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    wait(static_cast<Group*>(group)->backend->broadcast(ts, opts));
  });
}

// Makes CUDA device `index` this process's current device (what torch.cuda.set_device does), so that anything
// placed on "the current GPU", NCCL's communicators included, lands on the rank's own device.
int hg_dist_set_cuda_device(int index) {
  return guarded([&] {
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(c10::Device(c10::DeviceType::CUDA, index));
  });
}

int hg_dist_barrier(void* group) {
  return guarded([&] {
    c10d::BarrierOptions opts;
    wait(static_cast<Group*>(group)->backend->barrier(opts));
  });
}
}
