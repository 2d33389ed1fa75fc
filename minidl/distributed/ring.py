r"""Ring allreduce, written out on MPI point-to-point messages: teaching material for what ``all_reduce`` does.

The production path (:func:`minidl.distributed.all_reduce`) calls MPI's own collective, which picks an algorithm
for the message size and the network. This file shows the one that made data-parallel training scale (Baidu's
ring allreduce, used by Horovod and by NCCL): every rank ends with the elementwise sum of everyone's array, and no
rank ever sends more than about twice its array, however many ranks there are.

Notation: P ranks numbered 0 .. P-1 in a ring (rank r sends to r+1 and receives from r-1, modulo P); each holds an
array of n elements, cut into P chunks c_0 .. c_{P-1} of about n/P elements (``np.array_split``: sizes differ by at
most one, and some are empty when n < P).

**Phase 1, reduce-scatter** (P - 1 steps). At step s, rank r sends its chunk (r - s) mod P to the right and adds
the chunk (r - s - 1) mod P it receives from the left into its own. A chunk travels once around the ring collecting
one term per hop, so after P - 1 steps rank r holds the *complete* sum of chunk (r + 1) mod P::

    P = 3, chunks a, b, c; a_k is rank k's copy of chunk a

    step 0:  r0 sends a0 -> r1   r1 sends b1 -> r2   r2 sends c2 -> r0
             r1 holds a0+a1      r2 holds b1+b2      r0 holds c2+c0
    step 1:  r1 sends a0+a1 -> r2, r2 sends b1+b2 -> r0, r0 sends c2+c0 -> r1
             r2 holds a (all 3)  r0 holds b (all 3)  r1 holds c (all 3)

**Phase 2, allgather** (P - 1 steps). At step s, rank r sends chunk (r + 1 - s) mod P (complete) to the right and
*overwrites* chunk (r - s) mod P with the complete one it receives. After P - 1 steps every rank has every chunk.

**Cost.** In each of the 2 (P - 1) steps a rank sends one chunk of n/P elements and receives one, so each rank sends

.. math:: 2 \frac{P - 1}{P}\, n \ \text{elements} \quad (\times\ \text{itemsize bytes}),

which tends to 2n, independent of P: the links of the ring are all busy at once and none carries more than its
share. With a latency of alpha per message and a time of beta per byte, the time is
:math:`2 (P - 1)\, \alpha + 2 \frac{P - 1}{P}\, n\, \text{itemsize}\, \beta`: the bandwidth term is optimal (every
rank must receive (P-1)/P of the data at least once to reduce and once more to gather), the latency term grows with
P, which is why MPI switches to tree or recursive-doubling algorithms for small messages. The naive alternative,
everyone sending its whole array to rank 0 which sums and sends back, moves 2 (P - 1) n elements through rank 0's
link.

The sum here adds the terms in ring order, so float results can differ from ``MPI.Allreduce``'s in the last bits
(floating-point addition is not associative); integer results are identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.distributed import _comm

__all__ = ["ring_all_reduce"]


def ring_all_reduce(array: np.ndarray, comm: Any = None) -> np.ndarray:
    """Sum ``array`` over all ranks in place with a ring allreduce (reduce-scatter, then allgather); returns it.

    The readable version of what :func:`minidl.distributed.all_reduce` asks MPI to do (see the module docstring for
    the algorithm and its cost, 2 (P-1)/P n elements sent per rank).

    Args:
        array: a C-contiguous NumPy array (any numeric dtype), the same shape and dtype on every rank.
        comm: an mpi4py communicator. Default: None (the process group's, from
            :func:`~minidl.distributed.init_process_group`).

    Returns:
        ``array``, now holding the elementwise sum over the ranks.

    Examples:
        >>> import numpy as np
        >>> from minidl import distributed as dist
        >>> dist.init_process_group()  # alone: P = 1, nothing to add
        >>> ring_all_reduce(np.arange(5))
        array([0, 1, 2, 3, 4])
        >>> dist.destroy_process_group()
    """
    if comm is None:
        comm = _comm._require("ring_all_reduce").comm
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
        raise TypeError(
            "minidl.distributed.ring_all_reduce: expected a writeable C-contiguous NumPy array (summed in place), "
            f"got {type(array).__name__}"
        )
    P, r = comm.Get_size(), comm.Get_rank()
    if P == 1:
        return array
    right, left = (r + 1) % P, (r - 1) % P
    flat = array.reshape(-1)  # a view: writing into it writes into array
    chunks = np.array_split(flat, P)  # views, sizes n // P or n // P + 1
    received = np.empty_like(chunks[0])  # the largest chunk (array_split puts the longer ones first)

    # Phase 1, reduce-scatter: chunk (r - s) goes right, chunk (r - s - 1) comes from the left and is added.
    for s in range(P - 1):
        send, recv = chunks[(r - s) % P], chunks[(r - s - 1) % P]
        incoming = received[: recv.size]
        comm.Sendrecv(send, dest=right, recvbuf=incoming, source=left)
        recv += incoming
    # Now rank r holds the complete sum of chunk (r + 1) mod P.

    # Phase 2, allgather: the complete chunk (r + 1 - s) goes right, chunk (r - s) comes from the left, complete.
    for s in range(P - 1):
        send, recv = chunks[(r + 1 - s) % P], chunks[(r - s) % P]
        comm.Sendrecv(send, dest=right, recvbuf=recv, source=left)
    return array
