// IocpServer's Task-returning handler (OnDataAsync): each task is awaited,
// its exception reported through OnError (never lost, never fatal), and the
// connection's bytes stay in order: while a task of a connection runs, the
// library stops receiving from it (pause), and bytes already on their way
// run after that task; receiving resumes when the last one has finished.
using System;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        // Per connection: the last OnDataAsync task not finished yet.
        private readonly Dictionary<ulong, Task> dataTails = new Dictionary<ulong, Task>();
        private static readonly Task Done = Task.FromResult(0);

        // Handlers of one connection never overlap, so nothing else adds a
        // task for this id meanwhile; the lock orders against DataAsyncFinished.
        private void RunDataAsync(ulong id, byte[] data)
        {
            lock (dataTails)
            {
                Task tail;
                if (dataTails.TryGetValue(id, out tail))
                {
                    Task next = tail.ContinueWith(t => InvokeDataAsync(id, data), TaskScheduler.Default).Unwrap();
                    dataTails[id] = next;
                    next.ContinueWith(t => DataAsyncFinished(id, t), TaskScheduler.Default);
                    return;
                }
            }
            Task task = InvokeDataAsync(id, data);   // the handler's synchronous part: no lock held
            if (task.IsCompleted)
            {
                ReportFault(task);
                return;
            }
            lock (dataTails)
            {
                dataTails[id] = task;
                NativeMethods.iocp_pause_recv(handle, id);   // fails only for an ended connection
            }
            task.ContinueWith(t => DataAsyncFinished(id, t), TaskScheduler.Default);
        }

        private Task InvokeDataAsync(ulong id, byte[] data)
        {
            try
            {
                Task t = options.OnDataAsync(this, id, data);
                return t ?? Done;
            }
            catch (Exception e)
            {
                Report("OnDataAsync", e);
                return Done;
            }
        }

        private void DataAsyncFinished(ulong id, Task t)
        {
            ReportFault(t);
            lock (dataTails)
            {
                Task tail;
                if (!dataTails.TryGetValue(id, out tail) || tail != t) return;
                dataTails.Remove(id);
                if (!handle.IsClosed) NativeMethods.iocp_resume_recv(handle, id);
            }
        }

        private void ReportFault(Task t)
        {
            if (t.IsFaulted)
            {
                Exception e = t.Exception.InnerExceptions.Count == 1 ? t.Exception.InnerException : t.Exception;
                Report("OnDataAsync", e);
            }
        }

        // Tasks still running (tests: none once every connection ended and its tasks finished).
        internal int PendingDataTasks { get { lock (dataTails) return dataTails.Count; } }
    }
}
