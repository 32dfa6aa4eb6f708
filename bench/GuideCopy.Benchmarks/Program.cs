using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/GuideCopy.Benchmarks -- --filter '*'
// (BenchmarkDotNet's own switches: --list flat, --job short, --inProcess, --exporters json ...)
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
