using System.Runtime;
using GuideCopy.Migration.Agent;

namespace GuideCopy.Unit.Tests.Migration;

/// <summary>The agent compiles its own code at its start, so that its first pause compiles nothing.</summary>
[TestFixture]
public sealed class PausePathPrecompilerTests
{
    [Test]
    public void AfterOnePassTheCodeIsCompiledAndASecondPassCompilesNothing()
    {
        long atStart = JitInfo.GetCompiledMethodCount();
        (int compiled, int skipped) = PausePathPrecompiler.CompileAll();
        long firstPass = JitInfo.GetCompiledMethodCount() - atStart;
        // The agent's assemblies and libvirt's bindings hold a few thousand methods; only generic code waits for its callers.
        Assert.That(compiled, Is.GreaterThan(2000), "methods compiled");
        Assert.That(skipped, Is.LessThan(compiled / 4), "methods left to their first call");
        // Most were not compiled before (the tests before this one call a few hundred of them).
        Assert.That(firstPass, Is.GreaterThan(compiled / 2), $"methods the first pass compiled of {compiled}");

        // JitInfo counts the methods this process compiled: a pass over code already compiled
        // adds none of its own (a few from other threads of the test run at most).
        long before = JitInfo.GetCompiledMethodCount();
        (int again, _) = PausePathPrecompiler.CompileAll();
        long added = JitInfo.GetCompiledMethodCount() - before;
        Assert.That(again, Is.EqualTo(compiled));
        Assert.That(added, Is.LessThan(compiled / 20), $"methods compiled by the second pass of {again}");
    }
}
