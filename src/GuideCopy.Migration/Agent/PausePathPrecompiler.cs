using System.Diagnostics;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GuideCopy.Interop;
using GuideCopy.MemoryPlane;
using GuideCopy.Transport;

namespace GuideCopy.Migration.Agent;

/// <summary>
/// Compiles this agent's own code before its first migration, on a background thread at the
/// agent's start. Our assemblies are IL (the framework's are ReadyToRun): each method is
/// compiled on its first call, and the pause's path (the device-state relay, the journal's
/// Committed record, the verdict, the destination's load and its first demand faults) runs
/// once per migration, so each agent's first pause paid for compiling it, in the pause
/// (docs/migration.md, "An agent's first pause"). <see cref="RuntimeHelpers.PrepareMethod(RuntimeMethodHandle)"/>
/// compiles a method as its first call would (tiered compilation then goes on as usual), and
/// costs nothing when called again.
/// </summary>
public static class PausePathPrecompiler
{
    /// <summary>The assemblies the pause runs through: the migration's sides, the transport, the memory plane, the interop layer, libvirt's bindings (the verdict's event comes through them).</summary>
    private static readonly Assembly[] Assemblies =
    [
        typeof(SourceSide).Assembly, typeof(Pager).Assembly, typeof(PageInstaller).Assembly, typeof(Userfaultfd).Assembly, typeof(LibvirtSharp.Connection).Assembly,
    ];

    /// <summary>
    /// Starts the compilation on a background thread, and logs what it did. In the fair class,
    /// not SCHED_IDLE: it takes the runtime's loader and JIT locks, and a thread of the idle class
    /// preempted while holding one, beside a busy guest, would hold up whichever thread needs it
    /// next, a pause's among them (a priority inversion).
    /// </summary>
    public static void Start(AgentLog log)
    {
        var thread = new Thread(() =>
        {
            long t0 = Stopwatch.GetTimestamp();
            (int compiled, int skipped) = CompileAll();
            Userfaultfd.PrepareReadPath();
            log.Info($"pause path precompiled: {compiled} methods in {Stopwatch.GetElapsedTime(t0).TotalMilliseconds:0} ms ({skipped} left to their first call)");
        }) { IsBackground = true, Name = "precompile" };
        thread.Start();
    }

    /// <summary>
    /// Every method with a body in <see cref="Assemblies"/> that needs no type arguments, and
    /// every method of the closed generic types their fields hold (a Dictionary&lt;long, long&gt;
    /// is compiled for its value types on its first use, the pager's first fault among them);
    /// native imports are bound (<see cref="Marshal.Prelink"/>). Returns (compiled, skipped).
    /// </summary>
    public static (int Compiled, int Skipped) CompileAll()
    {
        int compiled = 0, skipped = 0;
        var heldGenerics = new HashSet<Type>();
        foreach (var assembly in Assemblies)
        {
            foreach (var type in assembly.GetTypes())
            {
                if (type.ContainsGenericParameters)
                {
                    skipped++; // needs its type arguments, which only its callers know
                    continue;
                }

                foreach (var field in type.GetFields(Declared))
                {
                    if (field.FieldType.IsConstructedGenericType && !field.FieldType.ContainsGenericParameters)
                    {
                        heldGenerics.Add(field.FieldType);
                    }
                }

                Compile(type, null, ref compiled, ref skipped);
            }
        }

        foreach (var type in heldGenerics)
        {
            Compile(type, type.GetGenericArguments().Select(a => a.TypeHandle).ToArray(), ref compiled, ref skipped);
        }

        return (compiled, skipped);
    }

    private const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    private static void Compile(Type type, RuntimeTypeHandle[]? typeArguments, ref int compiled, ref int skipped)
    {
        foreach (var method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method.IsAbstract || method.ContainsGenericParameters
                || (method.MethodImplementationFlags & (MethodImplAttributes.InternalCall | MethodImplAttributes.Runtime)) != 0)
            {
                skipped++;
                continue;
            }

            try
            {
                if ((method.Attributes & MethodAttributes.PinvokeImpl) != 0)
                {
                    Marshal.Prelink((MethodInfo)method);
                }
                else if (typeArguments is null)
                {
                    RuntimeHelpers.PrepareMethod(method.MethodHandle);
                }
                else
                {
                    RuntimeHelpers.PrepareMethod(method.MethodHandle, typeArguments);
                }

                compiled++;
            }
            catch (Exception e) when (e is ArgumentException or TypeLoadException or BadImageFormatException or InvalidOperationException
                                          or NotSupportedException or DllNotFoundException or EntryPointNotFoundException or MarshalDirectiveException)
            {
                skipped++; // left to its first call, as without this
            }
        }
    }
}
