//! bf16 products through cuBLAS (feature `cublas`), for the projections and the LM head.
//!
//! CubeCL has no Hopper `wgmma` path, and its bf16 matmul is reported at 50–65% of cuBLAS; this
//! is the route past that ceiling, measured against Burn's own matmul by `scripts/gpu_bench.sh`
//! (`bench_train_step --cublas 1`) and used only where [`enable`] was called.
//!
//! CubeCL does not expose its CUDA streams, so a product waits for the stream's work so far, runs
//! `cublasGemmEx` on a stream of its own, and waits for that before the next kernel is queued:
//! two host synchronisations per product, the cost the measurement has to beat.
//!
//! Three layers, as Burn's own custom ops are built: the product on CubeCL's tensors, a custom
//! operation in the fusion stream around it, and the autodiff node whose backward is two more
//! such products (`dA = dC·Bᵀ`, `dB = Aᵀ·dC`; a transposed operand is a cuBLAS flag, not a copy).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::element::BoolElement;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::cuda::CudaRuntime;
use cudarc::cublas::{result as blas, sys};
use cudarc::driver::{CudaContext, CudaStream};

use super::blas_layout::{Operand, row_major_product};
use crate::backend::{Inference, Train};

static ENABLED: AtomicBool = AtomicBool::new(false);
static RUN: AtomicU64 = AtomicU64::new(0);

/// Routes this process's 2-D bf16 products through cuBLAS from now on.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether [`enable`] turned cuBLAS on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How many products this process ran through cuBLAS (forward and backward).
pub fn products_run() -> u64 {
    RUN.load(Ordering::Relaxed)
}

/// A backend with a bf16 product through cuBLAS: `a [m, k] · b [k, n]`, both bf16, accumulated
/// in f32, the result bf16 `[m, n]`.
pub trait CublasMatmul: Backend {
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `a · b` through cuBLAS when `B` is the CUDA backend (with or without autodiff), the operands
/// are bf16 and 2-D, and cuBLAS is [`enable`]d; the operands back otherwise.
pub fn try_matmul<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if !enabled() || D != 2 || a.dtype() != DType::BF16 || b.dtype() != DType::BF16 {
        return Err((a, b));
    }
    let backend = TypeId::of::<B>();
    if backend == TypeId::of::<Train>() {
        return Ok(same(product::<Train>(same(a), same(b))));
    }
    if backend == TypeId::of::<Inference>() {
        return Ok(same(product::<Inference>(same(a), same(b))));
    }
    Err((a, b))
}

/// `x` as the type `U` the caller checked it is (a generic `Tensor<B, D>` as the concrete one).
fn same<T: 'static, U: 'static>(x: T) -> U {
    *(Box::new(x) as Box<dyn Any>).downcast::<U>().expect("the type checked by the caller")
}

fn product<B: CublasMatmul>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    let c = B::cublas_matmul(a.into_primitive().tensor(), b.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(c))
}

// ---- autodiff ----

impl<B: CublasMatmul, C: CheckpointStrategy> CublasMatmul for Autodiff<B, C> {
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Product;

        impl<B: CublasMatmul> Backward<B, 2> for Product {
            type State = (Option<NodeId>, Option<NodeId>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let (a, b) = ops.state;
                let a: Option<FloatTensor<B>> = a.map(|a| checkpointer.retrieve_node_output(a));
                let b: Option<FloatTensor<B>> = b.map(|b| checkpointer.retrieve_node_output(b));
                binary::<B, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |grad| B::cublas_matmul(grad, B::float_transpose(b.expect("b is kept when a is tracked"))),
                    |grad| B::cublas_matmul(B::float_transpose(a.expect("a is kept when b is tracked")), grad),
                );
            }
        }

        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        match Product.prepare::<C>([a.node.clone(), b.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                // each operand is kept for the other's gradient only
                let a_state = b_tracked.then(|| prep.checkpoint(&a));
                let b_state = a_tracked.then(|| prep.checkpoint(&b));
                prep.finish((a_state, b_state), B::cublas_matmul(a.primitive, b.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cublas_matmul(a.primitive, b.primitive)),
        }
    }
}

// ---- fusion: a custom operation in the stream, so what was queued before it runs first ----

impl<B: FusionBackend + CublasMatmul> CublasMatmul for Fusion<B> {
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Op<B> {
            desc: CustomOpIr,
            _backend: PhantomData<B>,
        }

        impl<B: FusionBackend + CublasMatmul> Operation<B::FusionRuntime> for Op<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([a, b], [c]) = self.desc.as_fixed();
                let product = B::cublas_matmul(handles.get_float_tensor::<B>(a), handles.get_float_tensor::<B>(b));
                handles.register_float_tensor::<B>(&c.id, product);
            }
        }

        let client = a.client.clone();
        let shape = Shape::new([a.shape[0], b.shape[1]]);
        let streams = OperationStreams::with_inputs([&a, &b]);
        let c = TensorIr::uninit(client.create_empty_handle(), shape, DType::BF16);
        let desc = CustomOpIr::new("cublas_matmul", &[a.into_ir(), b.into_ir()], &[c]);
        client.register(streams, OperationIr::Custom(desc.clone()), Op::<B> { desc, _backend: PhantomData }).output()
    }
}

// ---- the product on CubeCL's CUDA tensors ----

impl<F: FloatElement, I: IntElement, BT: BoolElement> CublasMatmul for CubeBackend<CudaRuntime, F, I, BT> {
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        gemm(a, b)
    }
}

/// cuBLAS's handle and stream for one device, made on first use.
struct Blas {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    handle: sys::cublasHandle_t,
    _workspace: cudarc::driver::CudaSlice<u8>,
}

// SAFETY: the handle is used under the mutex that owns it, with its context bound first.
unsafe impl Send for Blas {}

/// cuBLAS's workspace: 32 MiB, what PyTorch gives it on Hopper.
const WORKSPACE: usize = 32 << 20;

fn with_blas<T>(ordinal: usize, f: impl FnOnce(&Blas) -> T) -> T {
    static HANDLES: OnceLock<Mutex<HashMap<usize, Blas>>> = OnceLock::new();
    let mut handles = HANDLES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let blas = handles.entry(ordinal).or_insert_with(|| {
        // the device's primary context, the one CubeCL runs in
        let context = CudaContext::new(ordinal).expect("a CUDA context on the device CubeCL uses");
        context.bind_to_thread().expect("binding the CUDA context"); // the handle takes the current one
        let stream = context.new_stream().expect("a CUDA stream for cuBLAS");
        let handle = blas::create_handle().unwrap_or_else(|e| panic!("cuBLAS (libcublas) could not start: {e:?}"));
        let workspace = stream.alloc_zeros::<u8>(WORKSPACE).expect("cuBLAS's workspace");
        let ptr = cudarc::driver::DevicePtr::device_ptr(&workspace, &stream).0;
        // SAFETY: the handle was just made; the stream and the workspace live as long as it.
        unsafe {
            blas::set_stream(handle, stream.cu_stream() as _).expect("cublasSetStream");
            sys::cublasSetWorkspace_v2(handle, ptr as *mut _, WORKSPACE).result().expect("cublasSetWorkspace");
        }
        Blas { context, stream, handle, _workspace: workspace }
    });
    blas.context.bind_to_thread().expect("binding the CUDA context");
    f(blas)
}

/// How cuBLAS reads `t` in place ([`Operand::of`]), copied to rows first where it cannot.
fn operand(t: CubeTensor<CudaRuntime>) -> (CubeTensor<CudaRuntime>, Operand) {
    let dims = |t: &CubeTensor<CudaRuntime>| {
        let (shape, strides) = (t.meta.shape(), t.meta.strides());
        ([shape[0], shape[1]], [strides[0], strides[1]])
    };
    let (shape, strides) = dims(&t);
    if let Some(reading) = Operand::of(shape, strides) {
        return (t, reading);
    }
    let t = burn_cubecl::kernel::into_contiguous(t);
    let (shape, strides) = dims(&t);
    let reading = Operand::of(shape, strides).expect("a contiguous tensor's rows are contiguous");
    (t, reading)
}

/// `c [m, n] = a [m, k] · b [k, n]`, row-major, as cuBLAS's column-major `cᵀ = bᵀ · aᵀ`
/// ([`row_major_product`]).
fn gemm(a: CubeTensor<CudaRuntime>, b: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    assert!(
        a.dtype == DType::BF16 && b.dtype == DType::BF16,
        "cuBLAS products take bf16, got {:?} · {:?}",
        a.dtype,
        b.dtype
    );
    let (m, k, n) = (a.meta.shape()[0], a.meta.shape()[1], b.meta.shape()[1]);
    assert_eq!(k, b.meta.shape()[0], "inner dimensions of a [{m}, {k}] · b {:?}", b.meta.shape());
    let (client, device) = (a.client.clone(), a.device.clone());
    if k == 0 {
        return burn_cubecl::ops::numeric::zeros_client(client, device, Shape::new([m, n]), DType::BF16);
    }
    let c = burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        Shape::new([m, n]),
        DType::BF16,
    );
    if m == 0 || n == 0 {
        return c;
    }
    let (a, a_reading) = operand(a);
    let (b, b_reading) = operand(b);
    let g = row_major_product(m, k, n, a_reading, b_reading, c.meta.strides()[0]);
    let resources =
        [&a, &b, &c].map(|t| client.get_resource(t.handle.clone()).expect("a CUDA buffer of a live tensor"));
    // CubeCL's stream must be done with a and b (and with c's memory) before cuBLAS reads them
    cubecl::future::block_on(client.sync()).expect("the CUDA stream before a cuBLAS product");
    let [pa, pb, pc] = [0, 1, 2].map(|i| resources[i].resource().ptr);
    let (alpha, beta) = (1f32, 0f32);
    let to_int = |x: usize| i32::try_from(x).expect("a product dimension over 2^31");
    let op = |t: bool| if t { sys::cublasOperation_t::CUBLAS_OP_T } else { sys::cublasOperation_t::CUBLAS_OP_N };
    with_blas(device.index, |blas| {
        // SAFETY: the pointers are live CubeCL buffers of the sizes the shapes and strides say,
        // held by `resources` until cuBLAS's stream is synchronised below.
        unsafe {
            blas::gemm_ex(
                blas.handle,
                op(g.trans_a),
                op(g.trans_b),
                to_int(g.m),
                to_int(g.n),
                to_int(g.k),
                (&alpha as *const f32).cast(),
                pb as *const _,
                sys::cudaDataType::CUDA_R_16BF,
                to_int(g.lda),
                pa as *const _,
                sys::cudaDataType::CUDA_R_16BF,
                to_int(g.ldb),
                (&beta as *const f32).cast(),
                pc as *mut _,
                sys::cudaDataType::CUDA_R_16BF,
                to_int(g.ldc),
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
            )
            .unwrap_or_else(|e| panic!("cublasGemmEx [{m}, {k}] · [{k}, {n}]: {e:?}"));
        }
        blas.stream.synchronize().expect("cuBLAS's stream");
    });
    RUN.fetch_add(1, Ordering::Relaxed);
    drop(resources);
    c
}
