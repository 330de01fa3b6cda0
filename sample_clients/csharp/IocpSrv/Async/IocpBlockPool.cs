// The memory of the connections' Input pipes: fixed blocks that are their
// own IMemoryOwner, kept in a queue and reused, so that receiving allocates
// nothing. MemoryPool<byte>.Shared (a pipe's default) allocates an owner
// object per block and rents arrays on the drain thread that are returned
// on the reader's, which kept the Pipelines echo allocating about 1 KB per
// echo (dotnet-counters: dotnet.gc.heap.total_allocated).
#nullable enable
using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Threading;

namespace IocpSrv
{
    internal sealed class IocpBlockPool : MemoryPool<byte>
    {
        internal const int BlockSize = 4096;
        // Blocks kept for reuse at most; more are left to the GC.
        private const int MaxKept = 4096;
        private readonly ConcurrentQueue<Block> blocks = new ConcurrentQueue<Block>();
        private int kept;

        public override int MaxBufferSize => BlockSize;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            if (minBufferSize > BlockSize) return new Block(null, minBufferSize);
            if (blocks.TryDequeue(out Block? b))
            {
                Interlocked.Decrement(ref kept);
                b.Taken();
                return b;
            }
            return new Block(this, BlockSize);
        }

        private void Return(Block b)
        {
            if (Interlocked.Increment(ref kept) > MaxKept)
            {
                Interlocked.Decrement(ref kept);
                return;
            }
            blocks.Enqueue(b);
        }

        protected override void Dispose(bool disposing) { }

        private sealed class Block : IMemoryOwner<byte>
        {
            private readonly IocpBlockPool? pool;
            private readonly byte[] array;
            private int returned;

            internal Block(IocpBlockPool? pool, int size)
            {
                this.pool = pool;
#if NET8_0_OR_GREATER
                array = GC.AllocateUninitializedArray<byte>(size, pinned: pool != null);
#else
                array = new byte[size];
#endif
            }

            public Memory<byte> Memory => array;

            internal void Taken() => returned = 0;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref returned, 1) == 0) pool?.Return(this);
            }
        }
    }
}
